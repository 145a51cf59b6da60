"""What `litvit predict` shows and writes: a table on screen, and the records as JSON lines or CSV.

A record is plain data, `{"path": str, "top_k": [{"label": str, "index": int, "prob": float}, ...]}`, most probable
class first. JSON lines hold one record per line; CSV holds one row per (image, rank) — `path,rank,label,index,prob`
— so that a spreadsheet or `pandas.read_csv` reads it without parsing nested fields. Both are written atomically (a
crash never leaves half a file) through the one writer of litvit.checkpoint.
"""

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Sequence

from ..errors import ConfigError

__all__ = ["CSV_COLUMNS", "OUTPUT_FORMATS", "check_output", "format_table", "to_csv", "to_jsonl", "write_records"]

Record = Dict[str, Any]
OUTPUT_FORMATS = (".jsonl", ".csv")
CSV_COLUMNS = ("path", "rank", "label", "index", "prob")
PATH_WIDTH = 60  # longer paths are shortened on screen (never in the files), keeping their end


def check_output(path: str) -> str:
    """The format of `--output path` ('.jsonl' or '.csv'), or a one-line error, before any image is read."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise ConfigError(f"--output {path!r}: name a .jsonl or .csv file (the ending chooses the format)")
    if os.path.isdir(path):
        raise ConfigError(f"--output {path!r} is a folder: name a .jsonl or .csv file")
    return suffix


def to_jsonl(records: Sequence[Record]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def to_csv(records: Sequence[Record]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in records:
        for rank, guess in enumerate(r["top_k"], 1):
            writer.writerow([r["path"], rank, guess["label"], guess["index"], guess["prob"]])
    return buf.getvalue()


def write_records(records: Sequence[Record], path: str) -> None:
    """Write `records` to `path` (.jsonl or .csv) atomically: the file holds all of them or is left as it was."""
    from ..checkpoint import write_result

    text = to_csv(records) if check_output(path) == ".csv" else to_jsonl(records)
    then = ": pass --output a path in a writable folder (or free space)"
    write_result(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), then)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3) :]


def format_table(records: Sequence[Record]) -> str:
    """One block per image: its path on the first row, then one row per class, `prob` in percent."""
    if not records:
        return ""
    width = max(len("image"), *(min(len(r["path"]), PATH_WIDTH) for r in records))
    lines: List[str] = [f"{'image':<{width}}  {'prob':>6}  class"]
    for r in records:
        shown = _shorten(r["path"], PATH_WIDTH)
        for rank, guess in enumerate(r["top_k"]):
            lines.append(f"{shown if rank == 0 else '':<{width}}  {100 * guess['prob']:>5.1f}%  {guess['label']}")
    return "\n".join(lines)
