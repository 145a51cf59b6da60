"""What `litvit bench` measures: one config for both benchmarks (models, or one attention layer at several sizes).

Plain data, no torch: the command line reads the defaults for its help, and `--help` must stay fast.
"""

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import BenchError
from ..options import parse_size
from ..variants import VARIANTS

MODES = ("infer", "train")

# Models: litvit's rows of the paper's speed comparison (litvit.variants, bench=True), then the peers.
PEERS = ("resnet50", "pvt_v2_b2", "twins_pcpvt_small", "swin_tiny_patch4_window7_224", "convnext_tiny")
DEFAULT_MODELS = tuple(v.name for v in VARIANTS if v.bench) + PEERS
DEFAULT_REFERENCE = "swin_tiny_patch4_window7_224"

# Inference runtimes of the model benchmark (litvit.bench.runtimes): PyTorch eager, torch.compile (`frozen`: with
# inductor's weight freezing, inference only), ONNX Runtime, an AOTInductor package, static int8 (PT2E + inductor),
# static int8 ONNX (onnxruntime's quantiser) in ONNX Runtime. `RUNTIME+bf16` runs that one under bf16 autocast whatever
# --dtype says (int8+bf16: the layers left un-quantised in bf16), so fp32 and bf16 rows share one interleaved run.
RUNTIMES = ("eager", "compile", "frozen", "onnxruntime", "aoti", "int8", "onnxruntime-int8")
LOW_PRECISION = ("bf16",)


def split_model(entry: str) -> Tuple[str, Optional[List[str]]]:
    """'swin_tiny_patch4_window7_224@eager' -> (name, ['eager']): that model runs in those runtimes only (comma
    separated) instead of every --runtime; 'litv2_s' -> ('litv2_s', None)."""
    name, _, runtimes = entry.partition("@")
    return name, (runtimes.split(",") if runtimes else None)


def split_runtime(spec: str) -> Tuple[str, Optional[str]]:
    """'compile+bf16' -> ('compile', 'bf16'); 'int8' -> ('int8', None: the run's --dtype)."""
    name, _, precision = spec.partition("+")
    return name, precision or None


# One attention layer: the designs compared, and the token grids of LITv2's stages 2-4 at 224.
LAYERS = ("hilo", "hilo_matmul", "mhsa", "pvt_sra", "swin_window")
DEFAULT_SIZES = ((14, 14), (28, 28), (56, 56))

# Fields that only one of the two benchmarks reads (the record of a run keeps its own benchmark's fields only).
MODEL_FIELDS = ("models", "img_size", "latency", "reference", "runtimes")
LAYER_FIELDS = ("layers", "sizes", "dim", "heads", "window", "alpha")

# `--quick`: a smoke run of seconds; explicit options win over these.
QUICK_COMMON: Dict[str, Any] = {"batch_size": 2, "warmup": 1, "rounds": 1, "repeats": 1}
QUICK_MODELS: Dict[str, Any] = {"models": ["litv2_nano", "resnet18"], "img_size": 64, **QUICK_COMMON}
QUICK_LAYERS: Dict[str, Any] = {"sizes": [(7, 7), (14, 14)], "dim": 96, "heads": 3, **QUICK_COMMON}


@dataclass
class BenchConfig:
    """One benchmark run; see `litvit bench --help` for each field."""

    attention: bool = False  # False: whole models; True: one attention layer at several token grids
    # models
    models: List[str] = field(default_factory=lambda: list(DEFAULT_MODELS))
    img_size: int = 224
    latency: bool = True  # batch-1 inference latency too
    reference: Optional[str] = None  # the ratio columns' model (None: Swin-T when listed), in the eager runtime
    runtimes: List[str] = field(default_factory=lambda: ["eager"])  # each model runs in each (RUNTIMES)
    # one attention layer
    layers: List[str] = field(default_factory=lambda: list(LAYERS))
    sizes: List[Tuple[int, int]] = field(default_factory=lambda: list(DEFAULT_SIZES))
    dim: int = 768
    heads: int = 12
    window: int = 2  # HiLo window s
    alpha: float = 0.9  # HiLo's Lo-Fi share of heads
    # both
    batch_size: Optional[int] = None  # None: 64 on GPU; on CPU 16 (models) or 4 (attention)
    dtype: str = "fp32"  # fp32, bf16 / fp16 (autocast, weights fp32) or auto (litvit.runtime)
    mode: str = "infer"  # infer | train
    device: Optional[str] = None  # None: cuda when available, else cpu
    threads: Optional[int] = None
    compile: bool = False
    warmup: int = 2
    rounds: int = 3
    repeats: int = 3
    memory: bool = True  # peak memory in a fresh process per subject
    matmul_n: int = 2048
    memory_jobs: int = 2
    verbose: bool = False


def check_counts(cfg: BenchConfig) -> None:
    """The sizes and counts both benchmarks share; one line per problem, before anything is built."""
    if cfg.mode not in MODES:
        raise BenchError(f"unknown mode {cfg.mode!r}: use infer or train")
    own = [rt for entry in cfg.models if not cfg.attention for rt in (split_model(entry)[1] or [])]
    for rt in [*cfg.runtimes, *own]:
        base, precision = split_runtime(rt)
        if base not in RUNTIMES or (precision is not None and precision not in LOW_PRECISION):
            raise BenchError(f"unknown runtime {rt!r}: use {', '.join(RUNTIMES)}, optionally with +bf16 (int8+bf16)")
    if len(set(cfg.runtimes)) != len(cfg.runtimes) or not cfg.runtimes:
        raise BenchError(f"--runtime takes each runtime once, at least one: e.g. --runtime {' '.join(RUNTIMES[:2])}")
    for name, minimum in (("warmup", 0), ("rounds", 1), ("repeats", 1), ("memory_jobs", 1), ("batch_size", 1)):
        value = getattr(cfg, name)
        if value is not None and value < minimum:
            raise BenchError(f"--{name.replace('_', '-')} must be >= {minimum}, got {value}")


def record_config(cfg: BenchConfig, **resolved: Any) -> Dict[str, Any]:
    """The JSON record of `cfg`: its own benchmark's fields, with the values the run resolved."""
    other = MODEL_FIELDS if cfg.attention else LAYER_FIELDS
    out = {k: v for k, v in asdict(cfg).items() if k not in other and k != "attention"}
    if cfg.attention:
        out["sizes"] = [list(s) for s in cfg.sizes]
    out.update(resolved)
    return out


def parse_sizes(values: Sequence[Any]) -> List[Tuple[int, int]]:
    """'14', '28x20' or ints -> [(H, W)]; BenchError on anything else."""
    try:
        return [parse_size(v) for v in values]
    except ValueError as e:
        raise BenchError(str(e)) from None
