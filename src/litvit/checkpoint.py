"""Checkpoint files: reading them safely, checking what they hold, and writing them atomically.

Official LITv2 / LIT training checkpoints pickle the trainer's yacs `CfgNode` (and sometimes argparse / numpy
objects) beside the weights. `read_checkpoint` never executes foreign pickled code: it loads with
`torch.load(weights_only=True)` and, where the file names classes outside PyTorch's allow-list, maps exactly those
names to inert placeholder classes (their contents are kept as plain data and ignored). `.safetensors` files are read
without pickle at all. Anything that is not a readable checkpoint (text, an empty or truncated file, a folder) is
reported as one `CheckpointError` line, never as an error from deep inside the unpickler.

This module knows files, not models: fitting weights to a model and recognising a variant live in
`litvit.models._loading`. It imports nothing from litvit but `errors`, so every part of the package can use it.
"""

import contextlib
import logging
import os
import pickle
import secrets
import stat
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from .errors import CheckpointError, CheckpointNotFoundError, CheckpointSaveError

__all__ = [
    "CheckpointError",
    "CheckpointNotFoundError",
    "atomic_write",
    "check_finite",
    "load_exactly",
    "mismatch_report",
    "read_checkpoint",
    "read_metadata",
    "strip_prefix",
    "unwrap_state_dict",
    "write_result",
]

_logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
StateDict = Dict[str, torch.Tensor]


def read_checkpoint(path: PathLike) -> Dict[str, Any]:
    """Load a `.pth` / `.pt` / `.bin` (torch) or `.safetensors` file onto the CPU without running pickled code."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{str(path)!r} is a folder, not a checkpoint: name the .pth or .safetensors file in it")
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint {str(path)!r} does not exist (or is not a file)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as e:  # noqa: BLE001 - SafetensorError, OSError, ...: all mean the same to the user
            raise _unreadable(path, e, "safetensors file") from e
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # refused globals (an official training file), or not a pickle at all
        refused = e
    except Exception as e:  # noqa: BLE001 - KeyError, EOFError, RuntimeError (zip), ... from torch's readers
        raise _unreadable(path, e) from e
    foreign = _foreign_globals(path)
    if not foreign:
        raise _unreadable(path, refused) from refused
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_inert_pickle)
    except Exception as e:  # noqa: BLE001 - any failure here is reported with the foreign names
        needs = "; it needs the package 'yacs' (pip install yacs)" if any(n.startswith("yacs") for n in foreign) else ""
        raise CheckpointError(
            f"cannot read {str(path)!r} without running code it pickles ({', '.join(foreign)}){needs}. Error: {e}"
        ) from e
    _logger.info("read %s with inert placeholders for %s", path, ", ".join(foreign))
    return checkpoint


def _unreadable(path: Path, error: BaseException, kind: str = "PyTorch checkpoint") -> CheckpointError:
    detail = (str(error).strip().splitlines() or [""])[0][:120]
    return CheckpointError(
        f"cannot read {str(path)!r}: it is not a {kind}, or it is truncated or corrupt "
        f"({type(error).__name__}{': ' + detail if detail else ''}); download or save it again"
    )


def _foreign_globals(path: Path) -> List[str]:
    """Globals the file pickles outside PyTorch's allow-list ([] when it is no zip checkpoint at all)."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001 - not a zip checkpoint: the caller reports it as unreadable
        return []


def _placeholder(qualified_name: str) -> type:
    """An inert stand-in for a pickled class: accepts any constructor/state and runs no code of the original."""

    class Placeholder(dict):
        __qualname__ = __name__ = f"Placeholder[{qualified_name}]"

        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__()

        def __setstate__(self, state: Any) -> None:
            self.__dict__["_state"] = state

    return Placeholder


class _InertUnpickler(pickle.Unpickler):
    """Resolves exactly the globals `torch.load(weights_only=True)` allows; any other class or function named in
    the pickle becomes an inert placeholder, so nothing outside PyTorch's allow-list is imported or run."""

    def find_class(self, module: str, name: str) -> Any:
        from torch import _weights_only_unpickler

        qualified = f"{module}.{name}"
        allowed = _weights_only_unpickler._get_allowed_globals()
        return allowed[qualified] if qualified in allowed else _placeholder(qualified)


class _InertPickleModule:
    """The `pickle_module` handed to torch.load: its Unpickler is the inert one."""

    __name__ = "litvit_inert_pickle"
    Unpickler = _InertUnpickler

    @staticmethod
    def load(file: Any, **kwargs: Any) -> Any:
        return _InertUnpickler(file, **kwargs).load()


_inert_pickle = _InertPickleModule()


def read_metadata(path: PathLike) -> Dict[str, str]:
    """The string metadata of a `.safetensors` file ({} for other files)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # noqa: BLE001
        raise _unreadable(path, e, "safetensors file") from e


def unwrap_state_dict(checkpoint: Any) -> StateDict:
    """The weights of an official or litvit file: `{'model': sd}`, `{'state_dict': sd}` (mmdet / mmseg) or a bare
    state_dict; DataParallel / DDP `module.` and torch.compile `_orig_mod.` prefixes removed."""
    sd = checkpoint
    if isinstance(sd, dict):
        for key in ("model", "state_dict", "model_ema", "state_dict_ema"):
            if isinstance(sd.get(key), dict):
                sd = sd[key]
                break
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(
            "the checkpoint holds no state_dict: expected a dict of tensors, or one under 'model' or 'state_dict'"
        )
    out = {}
    for k, v in sd.items():
        for prefix in ("module.", "_orig_mod."):
            while k.startswith(prefix):
                k = k[len(prefix) :]
        out[k] = v
    return out


def strip_prefix(sd: StateDict, prefix: str) -> StateDict:
    """Keep only the keys under `prefix` (e.g. mmdet's `backbone.`), without it; unchanged if none has it."""
    if not any(k.startswith(prefix) for k in sd):
        return sd
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def _some(items: List[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f", ... ({len(items) - n} more)" if len(items) > n else "")


def check_finite(state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse weights holding NaN or Inf (a corrupt file or a diverged run): loading them would only surface later,
    as NaN logits or a crash inside a kernel. `source` names the file in the message."""
    bad = [
        k
        for k, v in state_dict.items()
        if isinstance(v, torch.Tensor)
        and v.device.type != "meta"
        and (v.is_floating_point() or v.is_complex())
        and not bool(torch.isfinite(v).all())
    ]
    if bad:
        what = "1 tensor holds" if len(bad) == 1 else f"{len(bad)} tensors hold"
        raise CheckpointError(
            f"{source}: {what} NaN or Inf: {_some(bad)}; the file is corrupt or from a diverged run: "
            "use another checkpoint (an earlier one, or a fresh download)"
        )


NOT_FLOAT = "not floating-point"


def mismatch_report(model: nn.Module, sd: StateDict, ignore_missing: Tuple[str, ...] = ()) -> List[str]:
    """Lines naming the missing, unexpected and mis-shaped keys of `sd` against `model` (empty when it fits)."""
    own = model.state_dict()
    not_tensors = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        return [f"not tensors ({len(not_tensors)}): {_some([f'{k} ({type(sd[k]).__name__})' for k in not_tensors])}"]
    missing = [k for k in own if k not in sd and not k.startswith(ignore_missing)]
    unexpected = [k for k in sd if k not in own]
    shaped = [k for k in sd if k in own and tuple(sd[k].shape) != tuple(own[k].shape)]
    # Integer or bool values for float weights would load by casting (torch's copy_) into wrong weights silently;
    # float precisions (fp16 / bf16 files) cast losslessly enough and stay accepted.
    kinds = [k for k in sd if k in own and own[k].is_floating_point() and not sd[k].is_floating_point()]
    lines = []
    if missing:
        lines.append(f"missing from the checkpoint ({len(missing)}): {_some(missing)}")
    if unexpected:
        lines.append(f"not in the model ({len(unexpected)}): {_some(unexpected)}")
    if shaped:
        detail = [f"{k} {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in shaped]
        lines.append(f"different shapes ({len(shaped)}): {_some(detail, 3)}")
    if kinds:
        detail = [f"{k} {sd[k].dtype} vs model {own[k].dtype}" for k in kinds]
        lines.append(f"{NOT_FLOAT} ({len(kinds)}): {_some(detail, 3)}")
    return lines


def load_exactly(model: nn.Module, sd: StateDict, does_not_fit: str, fix: str) -> None:
    """`model.load_state_dict(sd)`, strictly, or a one-line CheckpointError "<does_not_fit>: <what differs>. <fix>"
    instead of torch's multi-line RuntimeError (or a silent cast of integer values into float weights)."""
    problems = mismatch_report(model, sd) if isinstance(sd, Mapping) else ["it is not a state_dict"]
    if problems:
        raise CheckpointError(f"{does_not_fit}: {'; '.join(problems)}. {fix}")
    model.load_state_dict(sd)


def writable(path: PathLike) -> bool:
    """Whether a file can be written at `path`: not a folder, and its nearest existing folder writable (the missing
    ones are created by `atomic_write`). For refusing an output path before the work whose result goes there."""
    path = Path(path)
    folder = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("."))
    return not path.is_dir() and folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def atomic_write(path: PathLike, write: Callable[[Path], None]) -> None:
    """Write a file so that `path` holds either its old content or the complete new one, never a torn file.

    `write(tmp)` writes the content to the path it is given (e.g. `lambda p: torch.save(obj, p)`): a temporary file
    in the destination folder, which is then fsync'ed and renamed over `path`, and the folder fsync'ed. The temporary
    file is removed on any failure. The result has the permissions of a normally created file (0666 minus the
    umask). A failing write raises the same OSError subclass with the same errno, its message naming `path`.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the umask applies, as for open()
        mode = stat.S_IMODE(tmp.stat().st_mode)
        write(tmp)
        if stat.S_IMODE(tmp.stat().st_mode) != mode:  # writers that replace the file (safetensors) leave 0600
            os.chmod(tmp, mode)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        named = _naming(e, path)
        if named is None:
            raise
        raise named from e
    except BaseException:
        _remove(tmp)
        raise
    _fsync_folder(path.parent)


def write_result(path: PathLike, write: Callable[[Path], None], then: str, atomically: bool = True) -> None:
    """A result file (a run's summary, a benchmark table, a picture), written by `write(path)` through `atomic_write`
    (or in place, to append); a full disk or a permission problem is one CheckpointSaveError line, "cannot write PATH
    (reason)" followed by `then` (what is safe and what to do)."""
    try:
        if atomically:
            atomic_write(path, write)
        else:
            write(Path(path))
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno else str(e)
        raise CheckpointSaveError(e.errno or 0, f"cannot write {path} ({reason}){then}") from None


def _remove(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)


def _naming(error: OSError, path: Path) -> Optional[OSError]:
    """`error` again (same class and errno) with a message about `path` instead of the temporary file; None for
    a subclass that cannot be rebuilt that way."""
    text = f"cannot write {str(path)!r}: {error.strerror or error}"
    try:
        return type(error)(error.errno, text) if error.errno is not None else type(error)(text)
    except Exception:  # noqa: BLE001
        return None


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable; best effort (some file systems cannot open or fsync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
