"""Training checkpoints that lose nothing.

A checkpoint is a plain dict (tensors and Python data only: `torch.load(weights_only=True)` reads it) holding the
model, EMA, optimizer, scheduler and grad-scaler states, the position in the run (epoch, batch in the epoch,
optimizer step), every rank's random-generator states and the resolved configuration. It is written atomically:
to a temporary file in the same folder, flushed and fsync'ed, then renamed over the old one, so a crash or a full
disk at any moment leaves the previous checkpoint whole.
"""

import errno
import os
import random
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch

from ..checkpoint import CheckpointError, read_checkpoint

FORMAT = "litvit-train"
VERSION = 1


class CheckpointSaveError(OSError):
    """A checkpoint could not be written (full disk, permissions); the previous one is intact."""


def _write(obj: Any, f: Any) -> None:
    torch.save(obj, f)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: Path) -> None:
    """Write `obj` to `path` so that `path` always holds either the old or the new checkpoint, never a torn one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            _write(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        reason = "no space left on device" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        kept = f"{path.name} still holds the previous checkpoint" if path.exists() else "nothing was overwritten"
        raise CheckpointSaveError(
            e.errno or 0,
            f"could not write checkpoint {str(path)!r} ({reason}); {kept}: free space (or fix the folder) and "
            f"continue with `litvit train --resume {path}`",
        ) from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def rng_state() -> Dict[str, Any]:
    """This process's Python, NumPy, torch CPU and CUDA generator states, as plain data and tensors."""
    key, state, pos, has_gauss, cached = np.random.get_state()
    version, words, gauss_next = random.getstate()
    out = {
        "python": [version, list(words), gauss_next],
        "numpy": {
            "key": key,
            "state": torch.from_numpy(np.asarray(state, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
    }
    return out


def set_rng_state(state: Dict[str, Any]) -> None:
    version, words, gauss_next = state["python"]
    random.setstate((version, tuple(words), gauss_next))
    n = state["numpy"]
    np.random.set_state(
        (n["key"], n["state"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def find_resume_checkpoint(resume: str, output: Optional[str] = None) -> Path:
    """`--resume PATH` (a checkpoint or a run folder), `--resume` with `--output DIR`, or `--resume` alone (the most
    recent run under ./runs)."""
    if resume not in ("", "auto"):
        path = Path(resume)
        if path.is_dir():
            path = path / "last.pth"
        if not path.is_file():
            raise FileNotFoundError(
                f"nothing to resume at {resume!r}: pass a run folder (holding last.pth) or a checkpoint file"
            )
        return path
    if output:
        path = Path(output) / "last.pth"
        if not path.is_file():
            raise FileNotFoundError(f"--resume: {str(path)!r} does not exist; nothing to resume in {output!r}")
        return path
    runs = sorted(Path("runs").glob("*/last.pth"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise FileNotFoundError(
            "--resume: no run under ./runs to resume; pass the run folder or checkpoint (--resume DIR)"
        )
    return runs[-1]


def load_train_checkpoint(path: Path) -> Dict[str, Any]:
    """A litvit training checkpoint, or a CheckpointError that says what the file is instead."""
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is not a litvit training checkpoint (no optimizer / run state to resume): to start a "
            "new run from its weights, pass --pretrained instead of --resume"
        )
    if ckpt.get("version", 0) > VERSION:
        raise CheckpointError(f"{str(path)!r} was written by a newer litvit (format {ckpt['version']}): upgrade litvit")
    return ckpt
