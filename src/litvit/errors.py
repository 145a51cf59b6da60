"""The one error base of litvit.

Everything litvit raises about bad input or a run that cannot go on derives from `LitvitError`. Each error's message
is one line naming the problem and the fix; the command line prints it without a traceback and exits with the
error's `exit_code`. `same_on_all_ranks` says whether every torchrun process meets the error alike (a bad flag, a
missing file): then only rank 0 prints it. Each error also keeps the builtin base it always had (ValueError,
OSError, ...), so `except ValueError` in user code goes on working.
"""

from contextlib import contextmanager
from typing import Iterator, Optional

__all__ = [
    "BadImageError",
    "BenchError",
    "CheckpointError",
    "CheckpointNotFoundError",
    "CheckpointSaveError",
    "ConfigError",
    "DataError",
    "DataNotFoundError",
    "ExportError",
    "LitvitError",
    "NonFiniteLossError",
    "RunInterrupted",
    "WorkerDied",
    "loader_worker_death",
    "one_line",
    "refused_settings",
    "worker_died",
    "report",
]


class LitvitError(Exception):
    """Base of litvit's errors: a one-line message, the CLI exit status, and whether every rank raises it alike."""

    exit_code: int = 2  # 2: bad input or arguments (nothing ran); 1: a run that started and had to stop
    same_on_all_ranks: bool = True


class ConfigError(LitvitError, ValueError):
    """A configuration value or combination that cannot run; the message says which and what to pass instead."""


class CheckpointError(LitvitError, ValueError):
    """A checkpoint that cannot be read, or does not fit the model it is loaded into."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint file that does not exist."""


class DataError(LitvitError, ValueError):
    """A data set that cannot be used as given (empty folders, class mismatch, unreadable images in 'error' mode)."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A data folder or file that does not exist."""


class BadImageError(DataError):
    """An image file that cannot be read or decoded (raised with `bad_images='error'`); met by one rank only."""

    same_on_all_ranks = False


class ExportError(LitvitError, ValueError):
    """A model that cannot be exported as asked (size, format, a missing optional dependency, an output path)."""


class BenchError(LitvitError, ValueError):
    """A bad benchmark request."""


class CheckpointSaveError(LitvitError, OSError):
    """A checkpoint (or another result file) could not be written (full disk, permissions); the previous one is
    intact."""

    exit_code = 1

    def __str__(self) -> str:  # OSError(errno, text) prints "[Errno 28] text": keep the one line
        return str(self.strerror or super().__str__())


class NonFiniteLossError(LitvitError, RuntimeError):
    """The loss became NaN or infinite; the run stopped before applying that step."""

    exit_code = 1


class RunInterrupted(LitvitError):
    """Ctrl-C stopped a training run at the end of an optimizer step, with that step saved."""

    exit_code = 130  # a shell's status for a process stopped by SIGINT


class WorkerDied(LitvitError, RuntimeError):
    """A data-loading worker process died (most often killed by the out-of-memory killer); met by one rank."""

    exit_code = 1
    same_on_all_ranks = False


def loader_worker_death(e: BaseException) -> Optional[str]:
    """What torch's DataLoader said when one of its worker processes died ("DataLoader worker (pid 123) is killed by
    signal: Killed."), raised in the main process by the next batch or by its SIGCHLD handler at any moment; None for
    any other error."""
    text = str(e).strip()
    if not isinstance(e, RuntimeError) or not text.startswith("DataLoader worker (pid"):
        return None
    return text.splitlines()[0].rstrip(". ")


def worker_died(detail: str, fix: str) -> WorkerDied:
    """The one line for a dead loader worker (`detail`: `loader_worker_death`'s) and what to do (`fix`)."""
    return WorkerDied(f"a data-loading worker died ({detail}; most often the out-of-memory killer): {fix}")


def one_line(e: BaseException) -> str:
    """The message of `e` as one line; for an error re-raised from a data-loader worker, the original message."""
    msg = str(e.strerror if isinstance(e, OSError) and e.strerror and not e.filename else e)
    if "Original Traceback" in msg:
        last = msg.strip().splitlines()[-1]
        msg = last.partition(": ")[2] or last
    return msg.strip().splitlines()[0] if msg.strip() else type(e).__name__


@contextmanager
def refused_settings(model: str) -> Iterator[None]:
    """Around a model factory: a keyword the model does not take, or a bad value for one (the TypeError /
    ValueError of its constructor), becomes one ConfigError line naming the model."""
    try:
        yield
    except (TypeError, ValueError) as e:
        if isinstance(e, LitvitError):
            raise
        raise ConfigError(f"{model} does not take these settings ({one_line(e)}): fix or drop the keyword") from None


def report(prog: str, e: LitvitError, rank: int = 0) -> int:
    """Print `e` for command `prog` as one line on stderr (once, from rank 0, when every rank fails alike) and
    return its exit status: what every litvit command does with a LitvitError."""
    import sys

    if rank == 0 or not e.same_on_all_ranks:
        where = f" (rank {rank})" if rank else ""
        print(f"{prog}{where}: {one_line(e)}", file=sys.stderr, flush=True)
    return e.exit_code
