"""The annotation problems a dense reader found (COCO json, ADE20K label maps), said one way for both readers.

A reader collects (where, what) pairs while it checks a split; then, by `--bad-annotations`, the run either stops
at the first (`'error'`, with the total) or goes on without them and logs one summary line (`'skip'`).
"""

from typing import List, Sequence, Tuple

from ..errors import DataError

__all__ = ["Problem", "refuse_problems", "skipped_note"]

Problem = Tuple[str, str]  # (where: a file or an annotation, what is wrong with it)
SHOWN = 5  # problems named in a summary line


def refuse_problems(problems: Sequence[Problem], mode: str, source: str, fix: str, skip_means: str) -> None:
    """With mode 'error', raise a DataError naming the first problem and the total; else do nothing."""
    if problems and mode == "error":
        where, what = problems[0]
        raise DataError(
            f"{source}: {where}: {what} ({len(problems)} problem(s) in all): {fix}, or pass --bad-annotations skip "
            f"to leave {skip_means} out"
        )


def skipped_note(problems: Sequence[Problem], what: str, skipped: str, fix: str) -> List[str]:
    """The run log's one line about skipped `problems` (none: no line)."""
    if not problems:
        return []
    listed = "; ".join(f"{w}: {p}" for w, p in problems[:SHOWN])
    more = f"; ... ({len(problems) - SHOWN} more)" if len(problems) > SHOWN else ""
    return [
        f"{what}: skipped {len(problems)} {skipped} ({listed}{more}); {fix}, or pass --bad-annotations error to "
        "stop at them"
    ]
