"""The training checkpoint: the one module that writes, validates and reads it (`litvit eval` reads through it too).

A checkpoint is a plain dict (tensors and Python data only: `torch.load(weights_only=True)` reads it) holding the
model, EMA, optimizer, scheduler and grad-scaler states, the position in the run (`Progress`), every rank's
random-generator states, the configuration and the class names. It is written atomically: to a temporary file in
the same folder, flushed and fsync'ed, then renamed over the old one, so a crash or a full disk at any moment leaves
the previous checkpoint whole.
"""

import errno
import random
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from ..checkpoint import atomic_write, check_finite, read_checkpoint
from ..errors import CheckpointError, CheckpointSaveError, ConfigError

FORMAT = "litvit-train"
VERSION = 1
TEMP_GLOB = ".*.tmp"  # what litvit.checkpoint.atomic_write names its temporary files beside the target


@dataclass
class Progress:
    """Where the run is, and what it has measured so far (saved in every checkpoint)."""

    epoch: int = 0  # epoch to run next (or in progress)
    batch: int = 0  # next micro-batch of that epoch
    update: int = 0  # optimizer steps done
    best_top1: float = -1.0  # best validation score (the task's; top-1 for classification)
    best_top5: float = 0.0
    best_epoch: int = 0
    last_top1: Optional[float] = None
    last_top5: Optional[float] = None
    wall_time: float = 0.0  # seconds spent by earlier sessions of this run
    train_images: int = 0  # images trained on (all ranks), all sessions
    train_time: float = 0.0  # seconds in training steps, all sessions
    epoch_loss_sum: float = 0.0  # the epoch in progress: summed loss x images, images, seconds
    epoch_images: int = 0
    epoch_time: float = 0.0
    bad_images: List[str] = field(default_factory=list)

    def where(self) -> str:
        return f"epoch {self.epoch + 1}, step {self.batch}" if self.batch else f"end of epoch {self.epoch}"


def make_checkpoint(
    *,
    model_name: str,
    model: Dict[str, torch.Tensor],
    optimizer: Dict[str, Any],
    scheduler: Dict[str, Any],
    progress: Progress,
    rng: List[Dict[str, Any]],
    config: Dict[str, Any],
    resolved: Dict[str, Any],
    classes: List[str],
    config_name: Optional[str],
    model_ema: Optional[Dict[str, torch.Tensor]] = None,
    scaler: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    ck: Dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "model_name": model_name,
        "model": model,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "progress": dict(vars(progress)),
        "rng": rng,
        "config": config,
        "resolved": resolved,
        "classes": list(classes),
        "config_name": config_name,
    }
    if model_ema is not None:
        ck["model_ema"] = model_ema
    if scaler is not None:
        ck["scaler"] = scaler
    return ck


def _write(obj: Any, f: Any) -> None:
    torch.save(obj, f)


def _write_file(obj: Any, path: Path) -> None:
    with open(path, "wb") as f:
        _write(obj, f)


def atomic_save(obj: Any, path: Path) -> None:
    """Write `obj` to `path` so that `path` always holds either the old or the new checkpoint, never a torn one
    (litvit.checkpoint.atomic_write); a failure says what is kept and how to go on."""
    path = Path(path)
    try:
        atomic_write(path, lambda tmp: _write_file(obj, tmp))
    except OSError as e:
        reason = "no space left on device" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        kept = f"{path.name} still holds the previous checkpoint" if path.exists() else "nothing was overwritten"
        raise CheckpointSaveError(
            e.errno or 0,
            f"could not write checkpoint {str(path)!r} ({reason}); {kept}: free space (or fix the folder) and "
            f"continue with `litvit train --resume {path}`",
        ) from e


def remove_stale_temporaries(folder: Path) -> List[Path]:
    """Delete the temporary files that a save killed mid-way left in `folder` (the caller holds the run's lock)."""
    removed = []
    for p in Path(folder).glob(TEMP_GLOB):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def rng_state() -> Dict[str, Any]:
    """This process's Python, NumPy, torch CPU and CUDA generator states, as plain data and tensors."""
    key, state, pos, has_gauss, cached = np.random.get_state()
    version, words, gauss_next = random.getstate()
    return {
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
            raise ConfigError(f"nothing to resume at {resume!r}: pass a run folder (holding last.pth) or a checkpoint")
        return path
    if output:
        path = Path(output) / "last.pth"
        if not path.is_file():
            raise ConfigError(f"--resume: {str(path)!r} does not exist; nothing to resume in {output!r}")
        return path
    runs = sorted(Path("runs").glob("*/last.pth"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise ConfigError("--resume: no run under ./runs to resume; pass the run folder or checkpoint (--resume DIR)")
    return runs[-1]


# The fix named when a training checkpoint's weights do not fit the model its own config describes.
DAMAGED = "The file was edited or is damaged: use another checkpoint of the run (best.pth, last.pth)"


def is_train_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def model_of(ck: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
    """(timm name, creation keywords) of the model a litvit training checkpoint holds: the run's model keywords,
    resolution and class count."""
    config = ck["config"]
    kwargs = dict(config.get("model_kwargs") or {})
    if config.get("img_size"):
        kwargs["img_size"] = config["img_size"]
    kwargs["num_classes"] = ck["resolved"]["num_classes"]
    return config["model"], kwargs


def _layout_problems(ck: Dict[str, Any], resuming: bool) -> List[str]:
    """What a training checkpoint lacks (or holds as the wrong type) of what evaluating it, or resuming it, reads."""
    needed: Dict[str, type] = {"model": dict, "config": dict, "resolved": dict}
    if resuming:
        needed.update(optimizer=dict, scheduler=dict, progress=dict, rng=list)
    wrong = [key for key, kind in needed.items() if not isinstance(ck.get(key), kind)]
    wrong += [k for k in ("model_ema", "scaler") if ck.get(k) is not None and not isinstance(ck[k], dict)]
    if isinstance(ck.get("config"), dict) and not isinstance(ck["config"].get("model"), str):
        wrong.append("config.model")
    if isinstance(ck.get("resolved"), dict) and not isinstance(ck["resolved"].get("num_classes"), int):
        wrong.append("resolved.num_classes")
    classes = ck.get("classes")
    if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        wrong.append("classes")
    if resuming and isinstance(ck.get("progress"), dict):
        known = {f.name for f in fields(Progress)}
        wrong += [f"progress.{k}" for k in ck["progress"] if k not in known]
    return wrong


def validate(ck: Any, path: Any, resuming: bool = False) -> Dict[str, Any]:
    """A readable litvit training checkpoint (format, version, layout, finite weights), or a CheckpointError that says
    what the file is instead. `resuming`: the optimizer and run state must be there too."""
    if not is_train_checkpoint(ck):
        raise CheckpointError(
            f"{str(path)!r} is not a litvit training checkpoint (no optimizer / run state to resume): to start a "
            "new run from its weights, pass --pretrained instead of --resume"
        )
    if ck.get("version", 0) > VERSION:
        raise CheckpointError(f"{str(path)!r} was written by a newer litvit (format {ck['version']}): upgrade litvit")
    wrong = _layout_problems(ck, resuming)
    if wrong:
        raise CheckpointError(f"{str(path)!r}: {', '.join(wrong)} missing or of the wrong type. {DAMAGED}")
    for key in ("model", "model_ema"):
        if key in ck:
            check_finite(ck[key], f"{path} ({key})")
    return ck


def load_train_checkpoint(path: Path) -> Dict[str, Any]:
    """Read and validate a litvit training checkpoint."""
    return validate(read_checkpoint(path), path, resuming=True)


def read_any(path: Path) -> Dict[str, Any]:
    """Read a checkpoint file; a litvit training checkpoint comes back validated, any other file as read."""
    raw = read_checkpoint(path)
    return validate(raw, path) if is_train_checkpoint(raw) else raw


def progress_of(ck: Dict[str, Any]) -> Progress:
    return Progress(**ck["progress"])
