"""The one error base of litvit.

Everything litvit raises about bad input or a run that cannot go on derives from `LitvitError`. Each error's message
is one line naming the problem and the fix; the command line prints it without a traceback and exits with the
error's `exit_code`. `same_on_all_ranks` says whether every torchrun process meets the error alike (a bad flag, a
missing file): then only rank 0 prints it. Each error also keeps the builtin base it always had (ValueError,
OSError, ...), so `except ValueError` in user code goes on working.
"""

import re
from contextlib import contextmanager
from typing import Iterator, Optional, Tuple

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
    "OutOfResources",
    "ProcessLeft",
    "RunInterrupted",
    "another_process_left",
    "one_line",
    "out_of_resources",
    "refused_settings",
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
    """Ctrl-C stopped a command with its work so far saved: a training run at the end of an optimizer step, a
    `predict --output` run with the images done."""

    exit_code = 130  # a shell's status for a process stopped by SIGINT


class OutOfResources(LitvitError, RuntimeError):
    """The machine ran out of memory: a data-loading worker was killed (the out-of-memory killer) or an allocation
    was refused (CPU or GPU). Met by one rank; the message names the settings to lower."""

    exit_code = 1
    same_on_all_ranks = False


class ProcessLeft(LitvitError, RuntimeError):
    """Under torchrun: another process of the run stopped (its own message says why) while this one waited for it
    in a collective."""

    exit_code = 1
    same_on_all_ranks = False


_GONE = (
    "Connection closed by peer",
    "Connection reset by peer",
    "NCCL communicator was aborted",
    "remote process exit",
)


def another_process_left(e: BaseException) -> Optional[str]:
    """The one line for torch.distributed's errors that mean another process of the run is gone (gloo: "Connection
    closed by peer"; NCCL: "remote process exited"), rather than a traceback that hides the real error above it;
    None for any other error. Only meaningful in a run of several processes (the caller knows)."""
    if not isinstance(e, RuntimeError) or isinstance(e, LitvitError):
        return None
    marker = next((m for m in _GONE if m in str(e)), None)
    if marker is None:
        return None
    return f"stopped: another process of the run is gone (torch.distributed: {marker}); its own message says why"


def out_of_resources(e: BaseException) -> Optional[Tuple[str, str]]:
    """(what happened, the settings to lower) for torch's errors that mean the machine ran out of memory rather than
    a bug: "DataLoader worker (pid 123) is killed by signal: Killed." (raised by the next batch, or by the loader's
    SIGCHLD handler wherever the main process is), "DefaultCPUAllocator: can't allocate memory", a CUDA
    OutOfMemoryError. None for any other error. No torch import: the CLI's error path stays light."""
    if not isinstance(e, RuntimeError) or isinstance(e, LitvitError):
        return None
    text = str(e).strip()
    if text.startswith("DataLoader worker (pid"):
        detail = text.splitlines()[0].rstrip(". ")
        killed = detail.endswith("Terminated")  # a SIGTERM sent to every process of the run, not only the main one
        cause = "a SIGTERM to all the processes" if killed else "most often the out-of-memory killer"
        return f"a data-loading worker died ({detail}; {cause})", "fewer --workers"
    gpu = type(e).__name__ == "OutOfMemoryError" or "CUDA out of memory" in text
    if gpu or "DefaultCPUAllocator: can't allocate memory" in text:
        size = re.search(r"(?:tried|trying) to allocate (\d+ bytes|\d+(?:\.\d+)? ?[KMGT]?i?B)", text, re.IGNORECASE)
        tried = f": it tried to allocate {size.group(1)}" if size else ""
        return f"out of {'GPU ' if gpu else ''}memory{tried}", "a smaller --batch-size (or --img-size)"
    return None


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
