"""`litvit eval --json`: the results written as a file, whole or not at all."""

import json
from typing import Any, Dict

from ..checkpoint import atomic_write
from ..errors import CheckpointSaveError

__all__ = ["write_json"]


def write_json(path: str, results: Dict[str, Any]) -> None:
    """The results as a JSON file, written atomically; a failed write (a full disk) is one line, and the results
    are still on the screen above it."""
    text = json.dumps(results, indent=2)
    try:
        atomic_write(path, lambda tmp: tmp.write_text(text))
    except OSError as e:
        raise CheckpointSaveError(f"--json: {e.strerror or e}; the results are above") from None
