"""What a run tells its user: rank 0's console lines, the progress bar, durations."""

import sys
from typing import Any, Optional


def format_time(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class Console:
    """Rank 0 prints; the other ranks stay quiet."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def info(self, msg: str) -> None:
        if self.enabled:
            print(msg, flush=True)

    def warn(self, msg: str) -> None:
        if self.enabled:
            print(f"warning: {msg}", file=sys.stderr, flush=True)


def progress_bar(show: Optional[bool], total: int, initial: int, desc: str) -> Any:
    """A tqdm bar on rank 0 when asked for (default: when stderr is a terminal), else None (log lines instead)."""
    if not (show if show is not None else sys.stderr.isatty()):
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="img", unit_scale=True, desc=desc, leave=False, dynamic_ncols=True)
