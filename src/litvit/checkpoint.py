"""Reading official and litvit checkpoints, and fitting them to a model with errors that say what does not fit.

Official LITv2 / LIT training checkpoints pickle the trainer's yacs `CfgNode` (and sometimes argparse / numpy
objects) beside the weights. `read_checkpoint` never executes foreign pickled code: it loads with
`torch.load(weights_only=True)` and, where the file names classes outside PyTorch's allow-list, maps exactly those
names to inert placeholder classes (their contents are kept as plain data and ignored). `.safetensors` files are read
without pickle at all.
"""

import json
import logging
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
from torch import nn

_logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
StateDict = Dict[str, torch.Tensor]


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or does not fit the model it is loaded into."""


def _placeholder(qualified_name: str) -> type:
    """An inert stand-in for a pickled class: accepts any constructor/state and runs no code of the original."""

    class Placeholder(dict):
        __qualname__ = __name__ = f"Placeholder[{qualified_name}]"

        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__()

        def __setstate__(self, state: Any) -> None:
            self.__dict__["_state"] = state

    return Placeholder


def read_checkpoint(path: PathLike) -> Dict[str, Any]:
    """Load a `.pth` / `.pt` / `.bin` (torch) or `.safetensors` file onto the CPU without running pickled code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist (or is not a file)")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path), device="cpu"))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{str(path)!r} is not a readable safetensors file ({e}); re-create it") from e
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        foreign = _foreign_globals(path)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(
            f"cannot read {str(path)!r} as a PyTorch checkpoint ({type(e).__name__}: {str(e).splitlines()[0]}); "
            "the file is truncated, corrupt or not a checkpoint: download or save it again"
        ) from e
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_inert_pickle)
    except Exception as e:  # noqa: BLE001 - any failure here is reported with the foreign names
        needs = "; it needs the package 'yacs' (pip install yacs)" if any(n.startswith("yacs") for n in foreign) else ""
        raise CheckpointError(
            f"cannot read {str(path)!r} without running code it pickles ({', '.join(foreign)}){needs}. Error: {e}"
        ) from e
    _logger.info("read %s with inert placeholders for %s", path, ", ".join(foreign))
    return checkpoint


class _InertUnpickler(pickle.Unpickler):
    """Resolves exactly the globals `torch.load(weights_only=True)` allows; any other class or function named in
    the pickle becomes an inert placeholder, so nothing outside PyTorch's allow-list is imported or run."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _allowed_globals()
        qualified = f"{module}.{name}"
        if qualified in allowed:
            return allowed[qualified]
        return _placeholder(qualified)


def _allowed_globals() -> Dict[str, Any]:
    from torch import _weights_only_unpickler

    return _weights_only_unpickler._get_allowed_globals()


class _InertPickleModule:
    """The `pickle_module` handed to torch.load: its Unpickler is the inert one."""

    __name__ = "litvit_inert_pickle"
    Unpickler = _InertUnpickler

    @staticmethod
    def load(file: Any, **kwargs: Any) -> Any:
        return _InertUnpickler(file, **kwargs).load()


_inert_pickle = _InertPickleModule()


def _foreign_globals(path: Path) -> List[str]:
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"cannot read {str(path)!r}: it is not a PyTorch checkpoint ({e})") from e


def read_metadata(path: PathLike) -> Dict[str, str]:
    """The string metadata of a `.safetensors` file ({} for other files)."""
    if Path(path).suffix != ".safetensors":
        return {}
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


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


def mismatch_report(model: nn.Module, sd: StateDict, ignore_missing: Tuple[str, ...] = ()) -> List[str]:
    """Lines naming the missing, unexpected and mis-shaped keys of `sd` against `model` (empty when it fits)."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd and not k.startswith(ignore_missing)]
    unexpected = [k for k in sd if k not in own]
    shaped = [k for k in sd if k in own and tuple(sd[k].shape) != tuple(own[k].shape)]

    def some(keys: List[str], n: int = 5) -> str:
        return ", ".join(keys[:n]) + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")

    lines = []
    if missing:
        lines.append(f"missing from the checkpoint ({len(missing)}): {some(missing)}")
    if unexpected:
        lines.append(f"not in the model ({len(unexpected)}): {some(unexpected)}")
    if shaped:
        detail = [f"{k} {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in shaped]
        lines.append(f"different shapes ({len(shaped)}): {some(detail, 3)}")
    return lines


def identify(sd: StateDict) -> Optional[Tuple[str, Dict[str, Any]]]:
    """The released variant (timm name, creation keywords) whose state_dict has exactly these keys and shapes."""
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    for name, kwargs in _candidates():
        if _shapes_of(name, json.dumps(kwargs, sort_keys=True)) == shapes:
            return name, kwargs
    return None


def _candidates() -> List[Tuple[str, Dict[str, Any]]]:
    from .models.litv2 import ALPHA_TAGS

    out: List[Tuple[str, Dict[str, Any]]] = [(n, {"alpha": 0.9}) for n in ("litv2_s", "litv2_m", "litv2_b")]
    out += [("litv2_s", {"alpha": a}) for a in sorted(set(ALPHA_TAGS.values())) if a != 0.9]
    out += [(n, {}) for n in ("lit_ti", "lit_s", "lit_m", "lit_b")]
    return out


_SHAPES_CACHE: Dict[Tuple[str, str], Dict[str, Tuple[int, ...]]] = {}


def _shapes_of(name: str, kwargs_json: str) -> Dict[str, Tuple[int, ...]]:
    key = (name, kwargs_json)
    if key not in _SHAPES_CACHE:
        import timm

        with torch.device("meta"):
            model = timm.create_model(name, **json.loads(kwargs_json))
        _SHAPES_CACHE[key] = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return _SHAPES_CACHE[key]


def describe(name: str, kwargs: Dict[str, Any]) -> str:
    return name + "".join(f", {k}={v}" for k, v in kwargs.items())


def load_into(
    model: nn.Module,
    checkpoint: Union[PathLike, Dict[str, Any]],
    filter_fn: Callable[[Dict[str, Any], nn.Module], StateDict],
    ignore_missing: Tuple[str, ...] = (),
) -> None:
    """Fit `checkpoint` (a path or a loaded object) to `model` through its `checkpoint_filter_fn` and load it.

    A classifier head of another size (a checkpoint for 1000 classes into a model for K) is left freshly initialised
    (fine-tuning); any other difference raises a `CheckpointError` that lists what does not fit and, when the file is
    a known variant, which one it is.
    """
    source = str(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else "the given state_dict"
    meta = read_metadata(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else {}
    raw = read_checkpoint(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else checkpoint
    sd = filter_fn(raw, model)
    sd, head_dropped = _adapt_head(model, sd)
    if head_dropped:
        ignore_missing = ignore_missing + ("head.",)
    sd = _adapt_input_conv(model, sd)
    problems = mismatch_report(model, sd, ignore_missing)
    if problems:
        found = identify(unwrap_state_dict(raw))
        saved_as = meta.get("litvit_model")
        hint = ""
        if found is not None:
            hint = f" The checkpoint is {describe(*found)}: create that model instead."
        elif saved_as:
            hint = f" The file says it holds {saved_as}."
        target = getattr(model, "pretrained_cfg", {}).get("architecture") or type(model).__name__
        if hasattr(model, "alpha"):
            target += f" (alpha={model.alpha})"
        raise CheckpointError(f"checkpoint {source} does not fit {target}: " + "; ".join(problems) + "." + hint)
    missing = set(model.state_dict()) - set(sd)
    model.load_state_dict(sd, strict=not missing)


def _adapt_head(model: nn.Module, sd: StateDict) -> Tuple[StateDict, bool]:
    """Drop a checkpoint head that does not fit the classifier (another class count, or no head): the model's head
    stays freshly initialised. Returns the state_dict and whether the head was dropped."""
    if not hasattr(model, "num_classes"):
        return sd, False
    own = model.state_dict()
    names = ("head.weight", "head.bias")
    if all(k in own and k in sd and own[k].shape == sd[k].shape for k in names) or not any(k in sd for k in names):
        return sd, False
    rows = sd["head.weight"].shape[0] if "head.weight" in sd else "?"
    _logger.info(
        "checkpoint head has %s classes, model %s: the head stays freshly initialised", rows, model.num_classes
    )
    return {k: v for k, v in sd.items() if k not in names}, True


def _adapt_input_conv(model: nn.Module, sd: StateDict) -> StateDict:
    """Sum / repeat the RGB patch-embedding weights for a model built with another `in_chans` (timm's rule)."""
    from timm.models import adapt_input_conv

    for name in ("patch_embed.proj.weight", "patch_embed1.proj.weight"):
        own = model.state_dict().get(name)
        if own is not None and name in sd and sd[name].shape[1] != own.shape[1] and sd[name].shape[1] == 3:
            sd = dict(sd)
            sd[name] = adapt_input_conv(own.shape[1], sd[name])
    return sd
