"""The run folder: chosen once (rank 0), held by one run at a time, and never left half-made.

A run takes an exclusive lock on its folder for its whole life, so a second `litvit train` pointed at the same
folder refuses to start instead of writing into it. Temporary files that a save killed mid-way left behind are
removed when the next run takes the folder. A run that stops before writing its first checkpoint removes what it
created (the folder itself if it made it).
"""

import errno
import fcntl
import json
import math
import os
import shutil
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import yaml

from ..checkpoint import write_result
from ..errors import ConfigError
from .checkpoint import remove_stale_temporaries


def choose_folder(output: Optional[str], model: str, resume_path: Optional[Path]) -> Path:
    """--output, the resumed run's folder, or a new runs/<model>-<time>[-k]."""
    if output:
        return Path(output)
    if resume_path is not None:
        return resume_path.parent
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out, k = Path("runs") / f"{model}-{stamp}", 1
    while out.exists():
        k += 1
        out = Path("runs") / f"{model}-{stamp}-{k}"
    return out


class RunFolder:
    """The folder of one run, locked while the run lives (rank 0 only; the other ranks just use the path)."""

    def __init__(self, path: Path, resuming: bool):
        self.path = Path(path)
        self.resuming = resuming
        self.created = False
        self.written: List[Path] = []
        self._lock_fd: Optional[int] = None

    def open(self) -> None:
        """Create (if needed) and lock the folder; refuse a folder that holds another run or is in use."""
        if not self.resuming and (self.path / "last.pth").exists():
            raise ConfigError(
                f"{str(self.path)!r} already holds a run (last.pth): continue it with --resume {self.path}, or "
                "pass another --output"
            )
        try:
            self.created = not self.path.exists()
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as e:
            raise ConfigError(
                f"cannot create the output folder {str(self.path)!r} ({e.strerror}): pass another --output"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._lock_fd = fd
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                raise ConfigError(
                    f"{str(self.path)!r} is in use by another litvit train run: wait for it, or pass another --output"
                ) from None
            # a file system without locks (some NFS / FUSE mounts: ENOLCK, EOPNOTSUPP): the run goes on unguarded
            print(
                f"warning: {str(self.path)!r} cannot be locked ({e.strerror or e}): a second run started into it "
                "would not be refused",
                file=sys.stderr,
                flush=True,
            )
        # Forked children (DataLoader workers) would otherwise share the lock and keep holding it for a few seconds
        # after this process is killed; they close their copy instead.
        os.register_at_fork(after_in_child=self._drop_in_child)
        remove_stale_temporaries(self.path)

    def _drop_in_child(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def close(self, started: bool) -> None:
        """Release the lock; a run that never wrote a checkpoint takes back what it made."""
        if not started and not (self.path / "last.pth").exists():
            if self.created:
                shutil.rmtree(self.path, ignore_errors=True)
            else:
                for p in self.written:
                    if p.is_dir():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        p.unlink(missing_ok=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the lock
            self._lock_fd = None

    def write_config(self, config: Dict[str, Any], resolved: Dict[str, Any]) -> None:
        text = yaml.safe_dump({"config": config, "resolved": resolved}, sort_keys=False)
        self.written.append(self._write("config.yaml", lambda tmp: tmp.write_text(text)))

    def append_metrics(self, record: Dict[str, Any]) -> None:
        def append(_: Path) -> None:  # appended in place: a torn last line is dropped by trim_metrics on resume
            with open(self.path / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

        self._write("metrics.jsonl", append, atomically=False)

    def write_summary(self, summary: Dict[str, Any]) -> None:
        text = json.dumps(summary, indent=2)
        self._write("summary.json", lambda tmp: tmp.write_text(text))

    def _write(self, name: str, write: Callable[[Path], None], atomically: bool = True) -> Path:
        path = self.path / name
        write_result(path, write, ": free space or fix permissions, then --resume", atomically)
        return path

    def trim_metrics(self, epochs_done: int) -> None:
        """Drop metric lines of epochs the checkpoint had not finished (a run killed after logging them), and a line
        torn by a kill or a full disk mid-append."""
        for name in ("metrics.jsonl", "samples.jsonl"):
            path = self.path / name
            if not path.exists():
                continue
            lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
            keep = [ln for ln in lines if _epoch_of(ln) <= epochs_done]
            if len(keep) != len(lines):
                text = "".join(ln + "\n" for ln in keep)
                self._write(name, lambda tmp, text=text: tmp.write_text(text))

    def tensorboard(self) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
        self.written.append(self.path / "tensorboard")
        return SummaryWriter(str(self.path / "tensorboard"))


def _epoch_of(line: str) -> float:
    """The epoch a metrics line records; infinity (dropped) for a torn or foreign line."""
    try:
        record = json.loads(line)
        return float(record.get("epoch", 0)) if isinstance(record, dict) else math.inf
    except (ValueError, TypeError):
        return math.inf
