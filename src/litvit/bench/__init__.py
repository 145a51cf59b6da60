"""Benchmarks: whole models (`run_model_bench`) and one attention layer (`run_attention_bench`); `litvit bench`.

See docs/performance.md for how to run them and what each reported field means.
"""

from .attention import AttentionBenchConfig, HiLoMatmul, run_attention_bench
from .core import BenchError, interleave, summarize
from .models import DEFAULT_MODELS, ModelBenchConfig, run_model_bench

__all__ = [
    "DEFAULT_MODELS",
    "AttentionBenchConfig",
    "BenchError",
    "HiLoMatmul",
    "ModelBenchConfig",
    "interleave",
    "run_attention_bench",
    "run_model_bench",
    "summarize",
]
