"""Whole-model benchmark: throughput, batch-1 latency, peak memory, parameters and GMACs of any timm models.

Every model is built once, then all measured steps are interleaved round-robin (with the matmul-peak probe as one
more task), so that drift in the machine's speed hits all models alike. The default set reproduces the LITv2
paper's "throughput vs peers" comparison on the machine at hand.
"""

import sys
from dataclasses import asdict, dataclass, field
from difflib import get_close_matches
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .. import flops as _flops  # noqa: F401  (registers the FlopCounterMode formula of torchvision's deform_conv2d)
from .core import (
    BenchError,
    autocast,
    busy_warning,
    check_dtype,
    check_mode,
    flatten,
    load_average,
    machine_info,
    rate_summary,
    resolve_device,
    run_children,
    set_threads,
    summarize,
    time_with_matmul_peak,
)

OURS = ("litv2_s", "litv2_m", "litv2_b", "lit_ti", "lit_s")
PEERS = ("resnet50", "pvt_v2_b2", "twins_pcpvt_small", "swin_tiny_patch4_window7_224", "convnext_tiny")
DEFAULT_MODELS = OURS + PEERS
DEFAULT_REFERENCE = "swin_tiny_patch4_window7_224"
QUICK_MODELS = ("litv2_nano", "resnet18")

LABELS = {
    "litv2_s": "LITv2-S",
    "litv2_m": "LITv2-M",
    "litv2_b": "LITv2-B",
    "litv2_nano": "LITv2-nano",
    "lit_ti": "LIT-Ti",
    "lit_s": "LIT-S",
    "lit_m": "LIT-M",
    "lit_b": "LIT-B",
    "resnet18": "ResNet-18",
    "resnet50": "ResNet-50",
    "pvt_v2_b2": "PVTv2-B2",
    "twins_pcpvt_small": "Twins-PCPVT-S",
    "swin_tiny_patch4_window7_224": "Swin-T",
    "convnext_tiny": "ConvNeXt-T",
}

LOGIT_TOL = 1e-2  # max relative logit difference of an autocast forward vs fp32 that counts as "ok"


@dataclass
class ModelBenchConfig:
    """What `run_model_bench` measures; see `litvit bench --help` for each field."""

    models: List[str] = field(default_factory=lambda: list(DEFAULT_MODELS))
    batch_size: Optional[int] = None  # None: 64 on GPU, 16 on CPU
    img_size: int = 224
    dtype: str = "fp32"
    mode: str = "infer"
    device: Optional[str] = None  # None: cuda if available, else cpu
    threads: Optional[int] = None
    compile: bool = False
    warmup: int = 2
    rounds: int = 3
    repeats: int = 3
    latency: bool = True
    memory: bool = True
    reference: Optional[str] = None  # None: Swin-T when in the list
    matmul_n: int = 2048
    memory_jobs: int = 2
    verbose: bool = False


def label(name: str) -> str:
    return LABELS.get(name, name)


def is_ours(name: str) -> bool:
    from timm.models import model_entrypoint

    return model_entrypoint(name).__module__.startswith("litvit.")


def check_models(names: List[str]) -> None:
    import timm

    import litvit  # noqa: F401  (registers our models with timm)

    if not names:
        raise BenchError("no models given: name at least one timm model, e.g. litv2_s resnet50")
    for name in names:
        if not timm.is_model(name):
            close = get_close_matches(name, timm.list_models(), n=3)
            hint = f"did you mean {', '.join(close)}?" if close else "see timm.list_models('*pattern*')"
            raise BenchError(f"unknown model {name!r}: not a timm or litvit model name; {hint}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BenchError(f"model {dupes[0]!r} is listed twice: name each model once")


def create_model(name: str, img_size: int) -> nn.Module:
    """timm.create_model at `img_size`: models with a size-dependent layout get img_size=..., others take any size."""
    import timm

    import litvit  # noqa: F401

    cfg = timm.get_pretrained_cfg(name)
    native = cfg.input_size[-1] if cfg is not None and cfg.input_size else 224
    if img_size != native:
        try:
            return timm.create_model(name, pretrained=False, img_size=img_size)
        except TypeError:  # the constructor has no img_size (CNNs, PVTv2): any input size works as is
            pass
    return timm.create_model(name, pretrained=False)


def make_step(
    model: nn.Module,
    x: torch.Tensor,
    mode: str,
    dtype: str,
    train_layout: bool = True,
    loss_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
) -> Callable[[], Any]:
    """The measured call. infer: forward under inference_mode (+ autocast). train: zero_grad, forward (+ autocast),
    cross-entropy on fixed labels (or `loss_fn(out)`), backward, AdamW step (GradScaler for fp16).

    The module's train/eval flag is set at each call (cheap), so that a model can serve a train step and an
    inference latency task in the same run. `train_layout=False` leaves the flag alone.
    """
    device = x.device
    if mode == "infer":

        def infer() -> Any:
            if train_layout:
                model.train(False)
            with torch.inference_mode(), autocast(device, dtype):
                return model(x)

        return infer

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == "fp16")
    target: Optional[torch.Tensor] = None

    def train() -> Any:
        nonlocal target
        if train_layout:
            model.train(True)
        opt.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            out = model(x)
        if loss_fn is not None:
            loss = loss_fn(out)
        else:
            if target is None:
                g = torch.Generator().manual_seed(0)
                target = torch.randint(0, out.shape[-1], (out.shape[0],), generator=g).to(device)
            loss = F.cross_entropy(out.float(), target)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss

    return train


def counted_flops(counter: FlopCounterMode) -> int:
    """FlopCounterMode's total, with convolution backward counted as twice the forward convolutions.

    torch's formula for `aten.convolution_backward` ignores `groups` (torch 2.1 - 2.15 at least): a depthwise 3x3
    conv's backward comes out ~C/2 times too large (LITv2-S: 50 GMACs instead of 0.14). Grad-input plus grad-weight
    of a convolution cost twice its forward (less for a first layer whose input needs no gradient).
    """
    counts = {str(k): v for k, v in counter.get_flop_counts().get("Global", {}).items()}
    total = counter.get_total_flops()
    bwd = counts.get("aten.convolution_backward", 0)
    if bwd:
        total += 2 * counts.get("aten.convolution", 0) - bwd
    return int(total)


def count_step_macs(model: nn.Module, x: torch.Tensor, mode: str) -> int:
    """MACs of one measured step per image, by FlopCounterMode: the forward (infer) or forward + backward (train).

    The train count runs on two images (BatchNorm needs more than one value per channel) and is halved; see
    `counted_flops` for the convolution backward.
    """
    was_training = model.training
    try:
        if mode == "infer":
            model.eval()
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                model(x[:1])
            return counter.get_total_flops() // 2
        model.train()
        xb = x[:2] if x.shape[0] >= 2 else x.expand(2, *x.shape[1:])
        with FlopCounterMode(display=False) as counter:
            out = model(xb)
            out.float().square().mean().backward()
        for p in model.parameters():
            p.grad = None
        return counted_flops(counter) // 2 // xb.shape[0]
    finally:
        model.train(was_training)


def logit_rel_diff(model: nn.Module, x: torch.Tensor, dtype: str) -> Optional[float]:
    """max |autocast logits - fp32 logits| / max |fp32 logits| in eval mode, or None for fp32."""
    if dtype == "fp32":
        return None
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            ref = model(x).float()
            with autocast(x.device, dtype):
                low = model(x).float()
    finally:
        model.train(was_training)
    scale = ref.abs().max().item()
    return float((low - ref).abs().max().item() / scale) if scale > 0 else float("inf")


def _default_batch(batch_size: Optional[int], device: torch.device) -> int:
    if batch_size is None:
        return 64 if device.type == "cuda" else 16
    if batch_size < 1:
        raise BenchError(f"--batch-size must be >= 1, got {batch_size}")
    return batch_size


def validate(cfg: ModelBenchConfig) -> Tuple[torch.device, int]:
    device = resolve_device(cfg.device)
    check_dtype(cfg.dtype, device)
    check_mode(cfg.mode)
    check_models(cfg.models)
    batch = _default_batch(cfg.batch_size, device)
    if cfg.img_size < 1:
        raise BenchError(f"--img-size must be >= 1, got {cfg.img_size}")
    if cfg.reference is not None and cfg.reference not in cfg.models:
        raise BenchError(f"--reference {cfg.reference!r} is not among the benchmarked models: add it to the list")
    if cfg.compile and device.type == "cpu":
        import shutil

        if shutil.which("cc") is None and shutil.which("gcc") is None and shutil.which("clang") is None:
            raise BenchError("--compile on CPU needs a C/C++ compiler (gcc or clang) on PATH; install one or drop it")
    return device, batch


def memory_spec(name: str, cfg: ModelBenchConfig, device: torch.device, batch: int) -> Dict[str, Any]:
    return {
        "kind": "model",
        "name": name,
        "batch_size": batch,
        "img_size": cfg.img_size,
        "dtype": cfg.dtype,
        "mode": cfg.mode,
        "device": str(device),
        "threads": cfg.threads,
        "compile": cfg.compile,
        "iters": 2,
    }


def baseline_spec(cfg_threads: Optional[int], device: torch.device) -> Dict[str, Any]:
    return {"kind": "baseline", "device": str(device), "threads": cfg_threads}


def _ratio_per_round(times: List[List[float]], ref_times: List[List[float]], kind: str) -> Dict[str, Any]:
    """Model vs reference, from medians taken within each round (both measured under the same load), summarised
    over rounds. kind 'throughput': img/s ratio (ref time / model time); 'latency': model time / ref time."""
    ratios = []
    for mine, ref in zip(times, ref_times):
        m, r = summarize(mine).median, summarize(ref).median
        ratios.append(r / m if kind == "throughput" else m / r)
    s = summarize(ratios)
    return {"median": s.median, "min": s.min, "max": s.max, "per_round": ratios}


def run_model_bench(cfg: ModelBenchConfig) -> Dict[str, Any]:
    """Run the model benchmark; returns the JSON-ready record (see docs/performance.md for the fields)."""
    device, batch = validate(cfg)
    threads = set_threads(cfg.threads)
    say = _printer(cfg.verbose)
    load_start, busy = load_average(), busy_warning(threads)
    if busy:
        say(f"litvit bench: warning: {busy}")
    reference = cfg.reference or (DEFAULT_REFERENCE if DEFAULT_REFERENCE in cfg.models else None)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, cfg.img_size, cfg.img_size, generator=g).to(device)
    x1 = x[:1].clone()

    tasks: Dict[str, Callable[[], Any]] = {}
    rows: Dict[str, Dict[str, Any]] = {}
    for name in cfg.models:
        say(f"building {name}")
        torch.manual_seed(0)
        try:
            model = create_model(name, cfg.img_size).to(device)
            macs = count_step_macs(model, x, "infer")
        except (ValueError, AssertionError, RuntimeError) as e:
            msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise BenchError(
                f"{name} does not run at {cfg.img_size}x{cfg.img_size} ({msg}); pick another --img-size or drop it"
            ) from None
        row: Dict[str, Any] = {
            "model": name,
            "label": label(name),
            "ours": is_ours(name),
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "macs": macs,
            "gmacs": macs / 1e9,
        }
        row["macs_step_per_image"] = macs if cfg.mode == "infer" else count_step_macs(model, x, "train")
        row["logit_rel_diff"] = logit_rel_diff(model, x[: min(batch, 4)], cfg.dtype)
        if row["logit_rel_diff"] is not None:
            row["logits_ok"] = row["logit_rel_diff"] <= LOGIT_TOL
        runner: nn.Module = model
        if cfg.compile:
            runner = torch.compile(model, dynamic=False)  # type: ignore[assignment]
        tasks[f"{name}"] = make_step(runner, x, cfg.mode, cfg.dtype)
        if cfg.latency:
            tasks[f"{name}@latency"] = make_step(runner, x1, "infer", cfg.dtype)
        rows[name] = row
    say(f"timing {len(cfg.models)} models: {cfg.rounds} rounds x {cfg.repeats} repeats after {cfg.warmup} warm-up")
    raw, warm, matmul = time_with_matmul_peak(tasks, device, cfg.rounds, cfg.repeats, cfg.warmup, cfg.matmul_n, say)
    peak_flops = matmul["gflops_median"] * 1e9

    for name, row in rows.items():
        times = raw[name]
        flat = flatten(times)
        row["warmup_s"] = warm.get(name, [])
        row["throughput"] = {
            "times_s": times,
            "summary_s": summarize(flat).as_dict(),
            "img_s": rate_summary(flat, batch),
        }
        row["peak_fraction"] = row["throughput"]["img_s"]["median"] * 2 * row["macs_step_per_image"] / peak_flops
        if cfg.latency:
            lat = raw[f"{name}@latency"]
            s = summarize(flatten(lat))
            row["latency"] = {
                "times_s": lat,
                "summary_s": s.as_dict(),
                "ms": {"median": s.median * 1e3, "min": s.min * 1e3, "max": s.max * 1e3},
            }

    memory: Dict[str, Any] = {}
    if cfg.memory:
        say("peak memory: one fresh process per model")
        specs = [baseline_spec(cfg.threads, device)] + [memory_spec(n, cfg, device, batch) for n in cfg.models]
        reports = run_children(specs, jobs=cfg.memory_jobs)
        memory["baseline"] = reports[0]
        base_rss = reports[0].get("peak_rss_bytes")
        for name, rep in zip(cfg.models, reports[1:]):
            rows[name]["memory"] = _memory_row(rep, base_rss, batch)

    if reference is not None:
        ref = rows[reference]
        for name, row in rows.items():
            ratios: Dict[str, Any] = {
                "throughput": _ratio_per_round(raw[name], raw[reference], "throughput"),
            }
            ratios["throughput"]["of_medians"] = (
                row["throughput"]["img_s"]["median"] / ref["throughput"]["img_s"]["median"]
            )
            if cfg.latency:
                ratios["latency"] = _ratio_per_round(raw[f"{name}@latency"], raw[f"{reference}@latency"], "latency")
            mem, ref_mem = row.get("memory", {}), ref.get("memory", {})
            if mem.get("peak_rss_mb") and ref_mem.get("peak_rss_mb"):
                ratios["peak_rss"] = mem["peak_rss_mb"] / ref_mem["peak_rss_mb"]
            if mem.get("running_peak_mb") and ref_mem.get("running_peak_mb"):
                ratios["running_peak_rss"] = mem["running_peak_mb"] / ref_mem["running_peak_mb"]
            if mem.get("cuda_peak_mb") and ref_mem.get("cuda_peak_mb"):
                ratios["cuda_peak"] = mem["cuda_peak_mb"] / ref_mem["cuda_peak_mb"]
            row["vs_reference"] = ratios

    config = asdict(cfg)
    config.update(batch_size=batch, threads=threads, device=str(device), reference=reference)
    machine = machine_info(device, threads)
    machine.update(load_average_start=load_start, busy_warning=busy)
    return {
        "kind": "models",
        "machine": machine,
        "config": config,
        "matmul": matmul,
        "memory": memory,
        "results": [rows[n] for n in cfg.models],
    }


def _memory_row(rep: Dict[str, Any], base_rss: Optional[int], batch: int) -> Dict[str, Any]:
    if "error" in rep:
        return {"error": rep["error"]}
    mb = 1024.0**2
    row: Dict[str, Any] = {"raw": rep, "peak_rss_mb": rep["peak_rss_bytes"] / mb}
    if base_rss:
        row["baseline_rss_mb"] = base_rss / mb
        row["over_baseline_mb"] = (rep["peak_rss_bytes"] - base_rss) / mb
    # The peak while the measured steps ran (import transients excluded), and what the steps added to the built
    # model per image (activations; in train mode also gradients and the optimizer state, created at step 1).
    step_peak = rep.get("step_peak_bytes")
    if step_peak is not None:
        row["running_peak_mb"] = step_peak / mb
        row["step_rss_per_image_mb"] = max(0, step_peak - rep["rss_built_bytes"]) / mb / batch
    if rep.get("cuda_peak_bytes") is not None:
        row["cuda_peak_mb"] = rep["cuda_peak_bytes"] / mb
        row["cuda_step_per_image_mb"] = max(0, rep["cuda_peak_bytes"] - rep["cuda_built_bytes"]) / mb / batch
    return row


def _printer(verbose: bool) -> Callable[[str], None]:

    def say(msg: str) -> None:
        if verbose:
            print(msg, file=sys.stderr, flush=True)

    return say
