"""`litvit bench --profile`: where a model's time goes, per kind of op (torch.profiler, self CPU / CUDA time).

Each model's measured step (the benchmark's own: inference under inference_mode, or forward + backward + AdamW) runs
`warmup` times, `repeats` times unprofiled, then `repeats` times under the profiler. Every op's exclusive (self)
time is put in one category by its name and, for convolutions, its weight's shape (a (C, 1, k, k) weight is a
depthwise conv); every op inside the optimizer's step counts as the optimizer. So the categories add up to the whole
step. The table gives milliseconds per step and shares, one column pair per model.

The profiler changes what it measures: its own small allocations fragment malloc's heap, so a step's large
activations land on fresh pages and are page-faulted in (LITv2-S's training step on an AMD EPYC, batch 16:
170k-300k minor faults per profiled step, none unprofiled), which slows the memory-bound ops most (its GELU forward
+ backward timed by hooks: ~0.25-0.3 s per step unprofiled, 0.6-0.9 s profiled; Swin-T's fp32 inference: 1.8 s
profiled against 1.0 s). The heap settles after a few profiled cycles, once the freed records of one leave room for the
next's: on the CPU the profile is taken again (`SETTLE_CYCLES` at most) until its steps fault no more than the
unprofiled ones, and only the last is kept. The table gives each model's unprofiled wall time per step and the minor
page faults per step with and without the profiler, so what is left of the effect stays visible.
"""

import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from .config import BenchConfig
from .models import ModelKind
from .subject import build_subject, make_step

__all__ = ["CATEGORIES", "categorize", "profile_models", "profile_table"]

# (category, op names); the first category naming an op takes it. Convolutions are split by shape in `categorize`.
CATEGORIES: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("GEMM (linear, matmul)", ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "aten::_addmm_activation",
                               "mkldnn::_linear_pointwise", "aten::mkldnn_linear", "aten::matmul")),
    # index_select: DTM's fp32 inference gathers its bilinear corners (no other litvit layer uses it)
    ("deformable conv (DTM)", ("torchvision::deform_conv2d", "torchvision::_deform_conv2d_backward",
                               "aten::grid_sampler_2d", "aten::grid_sampler_2d_backward", "aten::index_select",
                               "aten::cudnn_grid_sampler", "aten::cudnn_grid_sampler_backward")),
    ("attention (SDPA, softmax)", ("aten::_scaled_dot_product_flash_attention_for_cpu",
                                   "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
                                   "aten::_softmax", "aten::_softmax_backward_data",
                                   "aten::_scaled_dot_product_efficient_attention",
                                   "aten::_efficient_attention_forward", "aten::_efficient_attention_backward",
                                   "aten::_flash_attention_forward", "aten::_flash_attention_backward")),
    ("GELU", ("aten::gelu", "aten::gelu_backward", "aten::gelu_")),
    ("LayerNorm", ("aten::native_layer_norm", "aten::native_layer_norm_backward")),
    ("pooling", ("aten::avg_pool2d", "aten::avg_pool2d_backward", "aten::adaptive_avg_pool2d",
                 "aten::_adaptive_avg_pool2d", "aten::_adaptive_avg_pool2d_backward", "aten::mean")),
    ("copies (copy_, cat, pad, roll)", ("aten::copy_", "aten::clone", "aten::contiguous", "aten::_to_copy",
                                        "aten::cat", "aten::constant_pad_nd", "aten::roll", "aten::index",
                                        "aten::fill_", "aten::zero_", "aten::zeros", "aten::empty_like")),
    ("BatchNorm, max pooling", ("aten::native_batch_norm", "aten::native_batch_norm_backward",
                                "aten::_native_batch_norm_legit", "aten::_native_batch_norm_legit_no_training",
                                "aten::max_pool2d_with_indices", "aten::max_pool2d_with_indices_backward")),
    ("elementwise (add, mul, ...)", ("aten::add", "aten::add_", "aten::mul", "aten::mul_", "aten::div", "aten::div_",
                                     "aten::sub", "aten::rsub", "aten::sum", "aten::relu", "aten::relu_",
                                     "aten::threshold_backward", "aten::neg", "aten::where")),
)  # fmt: skip
CONV_OPS = ("aten::mkldnn_convolution", "mkldnn::_convolution_pointwise", "aten::convolution_backward",
            "aten::_convolution", "aten::thnn_conv2d", "aten::_slow_conv2d_forward", "aten::_slow_conv2d_backward",
            "aten::cudnn_convolution", "aten::mkldnn_convolution_backward", "aten::_conv_depthwise2d",
            "aten::convolution_backward_overrideable")  # fmt: skip
DEPTHWISE = "depthwise conv (+ fused GELU)"
CONV = "other convolutions (patch embeddings)"
OPTIMIZER = "optimizer (AdamW step)"
OTHER = "other"
SETTLE_CYCLES = 4  # CPU: profiled cycles thrown away at most while the profiler's records still fault the step in
ORDER = [c for c, _ in CATEGORIES[:2]] + [DEPTHWISE, CONV] + [c for c, _ in CATEGORIES[2:]] + [OPTIMIZER, OTHER]
_BY_NAME = {op: cat for cat, ops in CATEGORIES for op in ops}


def _weight_shape(name: str, shapes: Sequence[Any]) -> Optional[List[int]]:
    index = 2 if name.endswith("backward") else 1  # convolution_backward(grad_out, input, weight, ...)
    if len(shapes) > index and isinstance(shapes[index], (list, tuple)) and len(shapes[index]) == 4:
        return list(shapes[index])
    return None


def categorize(name: str, input_shapes: Sequence[Any] = ()) -> str:
    """The category of one op, by name (and, for a convolution, its weight's shape)."""
    if name in CONV_OPS:
        w = _weight_shape(name, input_shapes)
        return DEPTHWISE if w is not None and w[1] == 1 and w[0] > 1 else CONV
    return _BY_NAME.get(name, OTHER)


def _in_optimizer(ev: Any) -> bool:
    """Whether a profiled op ran inside the optimizer's step (its ops are elementwise, but they are the update)."""
    while ev is not None:
        if ev.name.startswith("Optimizer.step"):
            return True
        ev = ev.cpu_parent
    return False


def _op_events(events: Sequence[Any], cuda: bool) -> List[Any]:
    """The operators' events. On CUDA the profile also holds the kernels and the GPU side of annotations (such as
    the optimizer's step) as events of their own, whose time an operator's self device time (the kernels it
    launched) already counts: only the CPU-side events are kept, so that no kernel is counted twice."""
    if not cuda:
        return list(events)
    return [ev for ev in events if ev.device_type == DeviceType.CPU]


def _minor_faults() -> Optional[int]:
    """This process's minor page faults so far (None where the platform does not count them)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _faults_per_step(run: Callable[[], None], repeats: int) -> Optional[float]:
    """Minor page faults per step while `run` makes `repeats` steps (None where they are not counted)."""
    before = _minor_faults()
    run()
    after = _minor_faults()
    return None if before is None or after is None else (after - before) / repeats


def _profiled(run: Callable[[], None], repeats: int, activities: List[Any]) -> Tuple[Any, Optional[float]]:
    """One profiled cycle of `repeats` steps: the profiler, and the minor page faults per step it saw."""
    with profile(activities=activities, record_shapes=True) as prof:
        faults = _faults_per_step(run, repeats)
    return prof, faults


def _settled(profiled: Optional[float], unprofiled: Optional[float]) -> bool:
    """The profiled steps fault no more than the plain ones did (give or take 1024 pages): nothing to wait for."""
    return profiled is None or unprofiled is None or profiled <= max(1024.0, 1.5 * unprofiled)


def _profile_step(step: Any, warmup: int, repeats: int, cuda: bool) -> Tuple[Dict[str, float], List[Tuple], Dict]:
    """(ms per step by category, [(op, category, ms per step)] by decreasing time, {unprofiled wall ms per step,
    minor page faults per step unprofiled / profiled}) of `repeats` profiled calls after as many unprofiled ones."""
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(warmup):
        step()
    sync()

    def plain() -> None:
        for _ in range(repeats):
            step()
        sync()

    start = time.perf_counter()
    plain_faults = _faults_per_step(plain, repeats)
    wall_ms = (time.perf_counter() - start) * 1e3 / repeats
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    prof, profiled_faults = _profiled(plain, repeats, activities)
    for _ in range(0 if cuda else SETTLE_CYCLES):  # again, until the heap has room for the profiler's records
        if _settled(profiled_faults, plain_faults):
            break
        prof = None  # the last cycle's records go back to the heap, where the next cycle's are made
        prof, profiled_faults = _profiled(plain, repeats, activities)
    health = {"unprofiled_ms": wall_ms, "faults_unprofiled": plain_faults, "faults_profiled": profiled_faults}
    by_cat: Dict[str, float] = {c: 0.0 for c in ORDER}
    by_op: Dict[Tuple[str, str], float] = {}
    for ev in _op_events(prof.events(), cuda):
        us = ev.self_device_time_total if cuda else ev.self_cpu_time_total
        if us == 0:
            continue
        cat = OPTIMIZER if _in_optimizer(ev) else categorize(ev.name, ev.input_shapes or ())
        ms = us / 1e3 / repeats
        by_cat[cat] += ms
        by_op[(ev.name, cat)] = by_op.get((ev.name, cat), 0.0) + ms
    ops = sorted(((op, cat, ms) for (op, cat), ms in by_op.items()), key=lambda r: -r[2])
    return by_cat, ops, health


def profile_models(cfg: BenchConfig, device: torch.device, amp: Optional[torch.dtype], say: Any) -> Dict[str, Any]:
    """{model: {'categories': {category: ms per step}, 'total_ms', 'top_ops': [[op, category, ms], ...]}}."""
    kind = ModelKind()
    out: Dict[str, Any] = {}
    inputs: Dict[Tuple[int, ...], torch.Tensor] = {}
    for spec in kind.specs(cfg):
        if spec.get("runtime", "eager") != "eager":
            continue
        say(f"profiling {spec['name']}")
        subject = build_subject(kind, spec, int(cfg.batch_size or 16), device, cfg.mode, inputs)
        step = make_step(subject.module, subject.x, cfg.mode, amp, kind.loss(), kind.per_call_mode)
        cats, ops, health = _profile_step(step, cfg.warmup, cfg.repeats, device.type == "cuda")
        out[subject.key] = {
            "categories": cats,
            "total_ms": sum(cats.values()),
            **health,
            "top_ops": [[op, cat, round(ms, 3)] for op, cat, ms in ops[:12]],
        }
        del subject, step
    return out


def profile_table(profiles: Dict[str, Any]) -> str:
    """Markdown: one row per category (ms per step and share for each model), then each model's top ops."""
    names = list(profiles)
    head = "| category | " + " | ".join(f"{n} ms | {n} share" for n in names) + " |"
    lines = [head, "|---|" + "---|---|" * len(names)]
    for cat in ORDER:
        cells = []
        for n in names:
            ms, total = profiles[n]["categories"].get(cat, 0.0), profiles[n]["total_ms"]
            cells += [f"{ms:.1f}", f"{100 * ms / total:.1f}%" if total else "-"]
        if any(c not in ("0.0", "0.0%") for c in cells[::2]):
            lines.append(f"| {cat} | " + " | ".join(cells) + " |")
    totals = " | ".join(f"**{profiles[n]['total_ms']:.1f}** | 100%" for n in names)
    lines.append(f"| **total (profiled step)** | {totals} |")
    if all("unprofiled_ms" in profiles[n] for n in names):
        walls = " | ".join(f"{profiles[n]['unprofiled_ms']:.1f} | -" for n in names)
        lines.append(f"| wall time per step, unprofiled | {walls} |")
        faults = " | ".join(f"{_faults(profiles[n])} | -" for n in names)
        lines.append(f"| minor page faults per step, unprofiled / profiled | {faults} |")
    for n in names:
        lines += ["", f"Top ops of {n} (self time per step):", "", "| op | category | ms |", "|---|---|---|"]
        lines += [f"| `{op}` | {cat} | {ms:.2f} |" for op, cat, ms in profiles[n]["top_ops"]]
    return "\n".join(lines) + "\n"


def _faults(p: Dict[str, Any]) -> str:
    a, b = p.get("faults_unprofiled"), p.get("faults_profiled")
    return "-" if a is None or b is None else f"{a:,.0f} / {b:,.0f}"
