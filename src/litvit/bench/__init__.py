"""Benchmarks of whole models and of one attention layer, one harness (`run_bench`); `litvit bench`.

See docs/performance.md for how to run them and what each reported field means. The exports load on first use, so
that the command line (`litvit.bench.cli`) imports without torch.
"""

import importlib
from typing import Any

from ..errors import BenchError

_HOMES = {
    "BenchConfig": "config",
    "DEFAULT_MODELS": "config",
    "HiLoMatmul": "attention_layers",
    "interleave": "timing",
    "run_bench": "runner",
    "summarize": "timing",
}

__all__ = ["BenchError", *_HOMES]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
