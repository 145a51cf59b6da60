"""The one benchmark runner, for models and for attention layers alike.

validate the config -> resolve device, precision and threads -> build every subject (and count its MACs) ->
interleave the timed steps with the matmul-peak probe -> peak memory in fresh processes -> ratios -> the record
(JSON-ready; `report.write_outputs` turns it into table.md, results.json and plot.png).
"""

import math
import shutil
import sys
from dataclasses import replace
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from ..allocator import keep_freed_memory
from ..errors import BenchError, LitvitError, one_line
from ..runtime import autocast_dtype, precision_name, resolve_device, set_threads
from .attention import LayerKind
from .config import BenchConfig, check_counts, record_config, split_model, split_runtime
from .machine import (
    bf16_warning,
    busy_warning,
    cpu_ticks,
    int8_warning,
    load_average,
    machine_info,
    others_share,
    slow_bf16_gemm_warning,
    steal_share,
)
from .memory import available_bytes, measure_children
from .models import ModelKind
from .runtimes import CPU_ONLY, build_runtime, check_runtime
from .subject import Kind, Spec, build_subject, make_step
from .timing import Times, flatten, rate_summary, summarize, time_with_matmul_peak

Say = Callable[[str], None]
KINDS: Dict[str, Kind] = {"model": ModelKind(), "layer": LayerKind()}  # by a subject spec's "kind"


def kind_of(cfg: BenchConfig) -> Kind:
    return KINDS["layer" if cfg.attention else "model"]


def prepare(cfg: BenchConfig) -> Tuple[BenchConfig, torch.device, Optional[torch.dtype]]:
    """Check `cfg` before anything is built; returns it with batch size, precision and device resolved."""
    check_counts(cfg)
    device = resolve_device(_auto_device(cfg))
    if device.type == "cuda":
        # cuDNN times its kernels for each convolution shape at its first call (in the warm-up) and keeps the fastest,
        # as timm's benchmark and the official code's main() ask; every subject of the run gets the same.
        torch.backends.cudnn.benchmark = True
    amp = autocast_dtype(cfg.dtype, device)
    if cfg.compile and device.type == "cpu" and not any(shutil.which(cc) for cc in ("cc", "gcc", "clang")):
        raise BenchError("--compile on CPU needs a C/C++ compiler (gcc or clang) on PATH; install one or drop it")
    if cfg.attention and cfg.runtimes != ["eager"]:
        raise BenchError("--runtime applies to the model benchmark: drop it, or --compile the attention layers")
    # As every litvit command (run_command also calls it; it is idempotent): here too for `run_bench` called as a
    # library function, so the timed steps run under the same allocator as the measuring children (bench/_child.py).
    keep_freed_memory()
    batch = cfg.batch_size or (64 if device.type == "cuda" else kind_of(cfg).cpu_batch)
    cfg = replace(cfg, batch_size=batch, dtype=precision_name(amp), device=str(device))
    cfg = kind_of(cfg).validate(cfg)
    runtimes = {s["runtime_label"] for s in kind_of(cfg).specs(cfg) if "runtime_label" in s}
    for rt in sorted(runtimes):
        base, precision = split_runtime(rt)
        check_runtime(base, device, autocast_dtype(precision or cfg.dtype, device), cfg.mode)
    return cfg, device, amp


def _auto_device(cfg: BenchConfig) -> Optional[str]:
    """cfg.device, except that with no device given a run asking for a CPU-only runtime (onnxruntime, int8) runs
    on the CPU, so that every runtime of it is timed side by side on one device even where a GPU is present."""
    if cfg.device not in (None, "auto") or cfg.attention:
        return cfg.device
    asked = [*cfg.runtimes, *(rt for m in cfg.models for rt in (split_model(m)[1] or ()))]
    return "cpu" if any(split_runtime(rt)[0] in CPU_ONLY for rt in asked) else cfg.device


def printer(verbose: bool) -> Say:
    def say(msg: str) -> None:
        if verbose:
            print(msg, file=sys.stderr, flush=True)

    return say


def _check_fits(kind: Kind, spec: Spec, batch: int) -> None:
    """Refuse a subject whose step needs more memory than the machine has free, before it is built: a size far too
    large would otherwise get the process killed by the kernel instead of an error."""
    free = available_bytes()
    need = math.prod(kind.input_shape(spec, batch)) * 4 * kind.memory_per_input_byte
    if free is not None and need > free:
        raise BenchError(
            f"{kind.key(spec)} needs at least {need / 2**30:.1f} GiB at batch {batch}, more than the "
            f"{free / 2**30:.1f} GiB this machine has free: pick a smaller size or --batch-size"
        )


def build_tasks(
    kind: Kind, specs: List[Spec], cfg: BenchConfig, device: torch.device, amp: Optional[torch.dtype], say: Say
) -> Tuple[Dict[str, Dict[str, Any]], Dict[str, Callable[[], Any]]]:
    """Every subject built, described and turned into its timed step(s): (rows, tasks), both by subject key."""
    rows: Dict[str, Dict[str, Any]] = {}
    tasks: Dict[str, Callable[[], Any]] = {}
    inputs: Dict[Tuple[int, ...], torch.Tensor] = {}
    if device.type == "cpu":
        for spec in specs:
            _check_fits(kind, spec, int(cfg.batch_size))  # type: ignore[arg-type]
    for spec in specs:
        say(f"building {kind.key(spec)}")
        spec_amp = autocast_dtype(spec["dtype"], device) if "dtype" in spec else amp  # a runtime's own precision
        try:
            subject = build_subject(kind, spec, int(cfg.batch_size), device, cfg.mode, inputs)  # type: ignore[arg-type]
            rows[subject.key] = kind.describe(subject, cfg, spec_amp)
        except (ValueError, AssertionError, RuntimeError) as e:
            if isinstance(e, LitvitError):
                raise
            raise BenchError(kind.cannot_run(spec, one_line(e))) from None
        runtime = spec.get("runtime", "compile" if cfg.compile else "eager")
        module, facts = build_runtime(runtime, subject.module, subject.x, spec_amp)
        rows[subject.key].update(facts)
        tasks[subject.key] = make_step(module, subject.x, cfg.mode, spec_amp, kind.loss(), kind.per_call_mode)
        if kind.latency and cfg.latency:
            tasks[f"{subject.key}@latency"] = make_step(module, subject.x[:1].clone(), "infer", spec_amp)
    return rows, tasks


def add_timings(
    rows: Dict[str, Dict[str, Any]], raw: Dict[str, Times], warm: Dict[str, List[float]], batch: int, peak_flops: float
) -> None:
    """Each row's warm-up times, throughput (img/s), share of the matmul peak and, where timed, batch-1 latency."""
    for key, row in rows.items():
        flat = flatten(raw[key])
        row["warmup_s"] = warm.get(key, [])
        row["throughput"] = {
            "times_s": raw[key],
            "summary_s": summarize(flat).as_dict(),
            "img_s": rate_summary(flat, batch),
        }
        row["peak_fraction"] = row["throughput"]["img_s"]["median"] * 2 * row["macs_step_per_image"] / peak_flops
        if f"{key}@latency" in raw:
            lat = raw[f"{key}@latency"]
            s = summarize(flatten(lat))
            ms = {"median": s.median * 1e3, "min": s.min * 1e3, "max": s.max * 1e3}
            row["latency"] = {"times_s": lat, "summary_s": s.as_dict(), "ms": ms}


def run_bench(cfg: BenchConfig) -> Dict[str, Any]:
    """Run the benchmark `cfg` asks for; returns the JSON-ready record (see docs/performance.md for the fields)."""
    cfg, device, amp = prepare(cfg)
    kind = kind_of(cfg)
    threads = set_threads(cfg.threads)
    say = printer(cfg.verbose)
    load_start, ticks_start = load_average(), cpu_ticks()
    specs = kind.specs(cfg)
    precisions = {cfg.dtype} | {s["dtype"] for s in specs if "dtype" in s}
    slow_bf16 = bf16_warning(device.type, "bf16" if "bf16" in precisions else cfg.dtype)
    if slow_bf16:
        say(f"litvit bench: warning: {slow_bf16}")
    slow_int8 = int8_warning(device.type, [str(s.get("runtime_label", s.get("runtime", "eager"))) for s in specs])
    if slow_int8:
        say(f"litvit bench: warning: {slow_int8}")
    rows, tasks = build_tasks(kind, specs, cfg, device, amp, say)
    say(f"timing {len(rows)} subjects: {cfg.rounds} rounds x {cfg.repeats} repeats after {cfg.warmup} warm-up")
    # The bf16 probe says how fast bf16 GEMMs are beside fp32 ones (0.6x on one Intel class). Where bf16 is emulated
    # it only takes minutes (0.3 GFLOP/s for one 2048-sided product on an AVX2-only EPYC) to say what slow_bf16 says.
    bf16_probe = device.type == "cpu" and "bf16" in precisions and not slow_bf16
    raw, warm, matmul = time_with_matmul_peak(
        tasks, device, cfg.rounds, cfg.repeats, cfg.warmup, cfg.matmul_n, say, bf16_probe=bf16_probe
    )
    slow_gemm = slow_bf16_gemm_warning(matmul)
    if slow_gemm:
        say(f"litvit bench: warning: {slow_gemm}")
    add_timings(rows, raw, warm, int(cfg.batch_size), matmul["gflops_median"] * 1e9)  # type: ignore[arg-type]
    memory: Dict[str, Any] = {}
    if cfg.memory:
        say("peak memory: one fresh process per subject")
        run = {k: getattr(cfg, k) for k in ("batch_size", "dtype", "mode", "device", "threads", "compile")}
        memory["baseline"], mem_rows = measure_children(specs, run, jobs=cfg.memory_jobs)
        for row, mem in zip(rows.values(), mem_rows):
            row["memory"] = mem
    kind.compare(rows, raw, cfg)

    machine = machine_info(device, threads)
    ticks_end = cpu_ticks()
    others = others_share(ticks_start, ticks_end)
    busy = busy_warning(others)
    if busy:
        say(f"litvit bench: warning: {busy}")
    machine.update(
        load_average_start=load_start,
        busy_warning=busy,
        bf16_gemm_warning=slow_gemm or slow_bf16,
        steal_share=steal_share(ticks_start, ticks_end),
        others_share=others,
    )
    return {
        "kind": kind.record,
        "machine": machine,
        "config": record_config(cfg, threads=threads),
        "matmul": matmul,
        "memory": memory,
        "results": list(rows.values()),
    }
