"""`litvit eval --json`: the results written as a file, whole or not at all."""

import json
from typing import Any, Dict

from ..checkpoint import write_result

__all__ = ["write_json"]


def write_json(path: str, results: Dict[str, Any]) -> None:
    """The results as a JSON file, written atomically; a failed write (a full disk) is one line, and the results
    are still on the screen above it."""
    text = json.dumps(results, indent=2)
    write_result(path, lambda tmp: tmp.write_text(text), "; the results are above: pass another --json")
