"""Measurement core shared by the model and the attention-layer benchmarks.

* `summarize` / `Summary`: median, min, max (and mean) of a list of timings.
* `interleave`: runs named tasks round-robin over R rounds (each turn `repeats` timed calls), rotating the start of
  each round, so that drift in the machine's speed (other jobs, thermal state, frequency) hits every task alike.
* `matmul_task`: the machine's matmul peak (a 2048 x 2048 product), timed as one more interleaved task.
* `child_rss`: peak resident memory of a fresh process (`python -m litvit.bench._child`) that builds one model or
  layer and runs the measured step; `baseline_rss` is the same process building nothing.
* `machine_info`: CPU model, cores, versions, threads, date and command line, for the JSON record.

The clock is injectable everywhere (`clock=`), which is how the tests check the statistics and the ordering.
"""

import contextlib
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

Clock = Callable[[], float]

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MODES = ("infer", "train")


class BenchError(ValueError):
    """A bad benchmark request; its message is one line naming the problem and the fix."""


# --------------------------------------------------------------------------------------------------------------------
# Statistics and timing


@dataclass(frozen=True)
class Summary:
    """Statistics of a list of durations in seconds."""

    n: int
    median: float
    min: float
    max: float
    mean: float

    def as_dict(self) -> Dict[str, float]:
        return asdict(self)


def summarize(times: Sequence[float]) -> Summary:
    """Median, min, max and mean of `times` (seconds); raises BenchError on an empty list."""
    values = [float(t) for t in times]
    if not values:
        raise BenchError("no timings were taken: use --rounds >= 1 and --repeats >= 1")
    return Summary(
        n=len(values),
        median=statistics.median(values),
        min=min(values),
        max=max(values),
        mean=statistics.fmean(values),
    )


def rate_summary(times: Sequence[float], items: float) -> Dict[str, float]:
    """Items per second from per-call durations: median from the median time, min from the slowest call, max from
    the fastest (so min <= median <= max holds)."""
    s = summarize(times)
    return {"median": items / s.median, "min": items / s.max, "max": items / s.min}


def round_order(names: Sequence[str], round_index: int) -> List[str]:
    """The order tasks run in during round `round_index`: round-robin, the start rotated by one each round."""
    n = len(names)
    if n == 0:
        return []
    k = round_index % n
    return list(names[k:]) + list(names[:k])


def interleave(
    tasks: Dict[str, Callable[[], Any]],
    rounds: int,
    repeats: int,
    warmup: int = 0,
    clock: Clock = time.perf_counter,
    sync: Optional[Callable[[], None]] = None,
    on_call: Optional[Callable[[str, int, int, float], None]] = None,
    warmup_times: Optional[Dict[str, List[float]]] = None,
) -> Dict[str, List[List[float]]]:
    """Time every task `repeats` times per turn, round-robin over `rounds` rounds, after `warmup` untimed calls each.

    Returns {name: [[seconds of each repeat] for each round]}. `sync` (e.g. torch.cuda.synchronize) runs before the
    clock is read on both sides of a call. `on_call(name, round, repeat, seconds)` is called after each timed call.
    `warmup_times`, when given, receives the duration of each warm-up call (the first one includes any compiling).
    """
    if rounds < 1 or repeats < 1:
        raise BenchError(f"rounds ({rounds}) and repeats ({repeats}) must both be >= 1")
    if warmup < 0:
        raise BenchError(f"warmup must be >= 0, got {warmup}")
    names = list(tasks)
    do_sync = sync if sync is not None else (lambda: None)
    for name in names:
        for _ in range(warmup):
            do_sync()
            t0 = clock()
            tasks[name]()
            do_sync()
            if warmup_times is not None:
                warmup_times.setdefault(name, []).append(clock() - t0)
    out: Dict[str, List[List[float]]] = {name: [] for name in names}
    for r in range(rounds):
        for name in round_order(names, r):
            fn = tasks[name]
            times = []
            for i in range(repeats):
                do_sync()
                t0 = clock()
                fn()
                do_sync()
                dt = clock() - t0
                times.append(dt)
                if on_call is not None:
                    on_call(name, r, i, dt)
            out[name].append(times)
    return out


def flatten(times: List[List[float]]) -> List[float]:
    return [t for round_times in times for t in round_times]


# --------------------------------------------------------------------------------------------------------------------
# Devices, dtypes, threads


def resolve_device(device: Optional[str]) -> torch.device:
    """'cpu', 'cuda', 'cuda:1' or None (cuda when available, else cpu); BenchError if it cannot be used."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise BenchError(f"unknown device {device!r}: use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BenchError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise BenchError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s); use cuda:0 ..")
    elif dev.type != "cpu":
        raise BenchError(f"unsupported device {device!r}: use cpu, cuda or cuda:N")
    return dev


def check_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype not in DTYPES:
        raise BenchError(f"unknown dtype {dtype!r}: use fp32, bf16 or fp16")
    if dtype == "fp16" and device.type != "cuda":
        raise BenchError("fp16 autocast is a GPU mode: use --dtype bf16 (or fp32) on CPU, or --device cuda")
    if dtype == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise BenchError("this GPU has no bf16 support: use --dtype fp16 or fp32")
    return DTYPES[dtype]


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise BenchError(f"unknown mode {mode!r}: use infer or train")
    return mode


def autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    """torch.autocast for bf16 / fp16, nothing for fp32 (weights stay fp32: mixed precision, as in the papers)."""
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[dtype])


def synchronizer(device: torch.device) -> Optional[Callable[[], None]]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return None


def set_threads(threads: Optional[int]) -> int:
    if threads is not None:
        if threads < 1:
            raise BenchError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


# --------------------------------------------------------------------------------------------------------------------
# Matmul peak


def matmul_task(device: torch.device, n: int = 2048, dtype: torch.dtype = torch.float32) -> Callable[[], Any]:
    """One n x n @ n x n product (2 n^3 FLOPs) on fixed operands."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)

    def run() -> torch.Tensor:
        return torch.mm(a, b, out=out)

    return run


def progress_hook(say: Callable[[str], None], repeats: int) -> Callable[[str, int, int, float], None]:
    """An `interleave` callback that reports each task's last call of every round."""

    def hook(name: str, r: int, i: int, dt: float) -> None:
        if i == repeats - 1:
            say(f"  round {r + 1}: {name} {dt * 1e3:.1f} ms (last of {repeats})")

    return hook


def time_with_matmul_peak(
    tasks: Dict[str, Callable[[], Any]],
    device: torch.device,
    rounds: int,
    repeats: int,
    warmup: int,
    matmul_n: int,
    say: Callable[[str], None],
) -> Tuple[Dict[str, List[List[float]]], Dict[str, List[float]], Dict[str, Any]]:
    """Interleave `tasks` with the fp32 matmul probe; returns (raw times per task, warm-up times, matmul record)."""
    warm: Dict[str, List[float]] = {}
    raw = interleave(
        dict(tasks, **{"@matmul": matmul_task(device, matmul_n)}),
        rounds=rounds,
        repeats=repeats,
        warmup=warmup,
        sync=synchronizer(device),
        on_call=progress_hook(say, repeats),
        warmup_times=warm,
    )
    return raw, warm, matmul_record(raw.pop("@matmul"), matmul_n, "fp32")


def matmul_record(times: List[List[float]], n: int, dtype: str) -> Dict[str, Any]:
    flops = 2.0 * n**3
    flat = flatten(times)
    s = summarize(flat)
    return {
        "n": n,
        "dtype": dtype,
        "flops_per_call": flops,
        "times_s": times,
        "summary_s": s.as_dict(),
        "gflops_median": flops / s.median / 1e9,
        "gflops_best": flops / s.min / 1e9,
    }


# --------------------------------------------------------------------------------------------------------------------
# Memory


def _statm_rss_bytes() -> Optional[int]:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _ru_maxrss_bytes() -> int:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # bytes on macOS, kilobytes on Linux


def current_rss_bytes() -> int:
    """Resident set size now (Linux /proc; falls back to the peak where /proc is missing)."""
    rss = _statm_rss_bytes()
    return rss if rss is not None else _ru_maxrss_bytes()


def peak_rss_bytes() -> int:
    """This process's peak RSS in bytes, at least its current RSS (the kernel updates the peak lazily).

    On Linux this is VmHWM, the counter behind getrusage's ru_maxrss, but of this process image only: ru_maxrss
    also keeps the peak of the address space a fork copied from the parent before exec (a fresh child of a
    benchmark holding 3 GB reports 3 GB). Elsewhere, ru_maxrss.
    """
    hwm = _status_hwm_bytes()
    return max(hwm if hwm is not None else _ru_maxrss_bytes(), _statm_rss_bytes() or 0)


def ru_maxrss_bytes() -> int:
    """getrusage(RUSAGE_SELF).ru_maxrss in bytes, as the kernel reports it (see `peak_rss_bytes`)."""
    return _ru_maxrss_bytes()


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux >= 4.0: /proc/self/clear_refs); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status_hwm_bytes() -> Optional[int]:
    """VmHWM from /proc/self/status: the peak RSS since exec or the last `reset_peak_rss` (Linux), else None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def run_child(spec: Dict[str, Any], timeout: float = 1800.0) -> Dict[str, Any]:
    """Run `python -m litvit.bench._child SPEC_JSON` in a fresh process; return its JSON report."""
    cmd = [sys.executable, "-m", "litvit.bench._child", json.dumps(spec)]
    env = dict(os.environ)
    if spec.get("threads"):
        env["OMP_NUM_THREADS"] = str(spec["threads"])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"memory child failed (exit {proc.returncode}): {tail}"}
    return json.loads(lines[-1])


def run_children(specs: Sequence[Dict[str, Any]], jobs: int = 2) -> List[Dict[str, Any]]:
    """Run memory children, `jobs` at a time (each process's peak RSS is its own, so they may overlap)."""
    if not specs:
        return []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(run_child, specs))


# --------------------------------------------------------------------------------------------------------------------
# Machine record


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device, threads: int) -> Dict[str, Any]:
    import timm

    info: Dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_end": load_average(),
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(("OMP_", "MKL_", "KMP_", "GOMP_"))},
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "threads": threads,
        "device": str(device),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
    }
    try:
        from litvit import __version__ as litvit_version

        info["litvit"] = litvit_version
    except ImportError:  # pragma: no cover
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def command_line(argv: Optional[Sequence[str]] = None) -> str:
    """The command as typed: `litvit ...` for the entry point, `python PATH ...` for scripts (path made relative)."""
    args = list(sys.argv if argv is None else argv)
    if args:
        first = args[0]
        if os.path.basename(first) == "litvit":
            args[0] = "litvit"
        elif first.endswith(".py"):
            rel = os.path.relpath(first)
            args[0] = "python " + (rel if not rel.startswith("..") else first)
    return " ".join([args[0]] + [shlex.quote(a) for a in args[1:]]) if args else ""


def load_average() -> Optional[List[float]]:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def busy_warning(threads: int) -> Optional[str]:
    """A warning when other processes keep the CPU busy (1-min load average + our threads > cores)."""
    load, cores = load_average(), os.cpu_count() or 1
    if load is None or load[0] + threads <= cores + 0.5:
        return None
    hint = "" if os.environ.get("OMP_WAIT_POLICY") else "; OMP_WAIT_POLICY=PASSIVE avoids spin-wait collapse"
    return f"machine busy (1-min load {load[0]:.2f} on {cores} cores, {threads} threads here): timings are noisy{hint}"


def parse_sizes(values: Sequence[Any]) -> List[Tuple[int, int]]:
    """'14', '28x20' or ints -> [(H, W)]; BenchError on anything else."""
    sizes = []
    for v in values:
        text = str(v).lower()
        try:
            parts = [int(p) for p in text.split("x")] if "x" in text else [int(text)] * 2
        except ValueError:
            raise BenchError(f"bad size {v!r}: give token-grid sides like 14 or 28x20") from None
        if len(parts) != 2 or min(parts) < 1:
            raise BenchError(f"bad size {v!r}: give token-grid sides like 14 or 28x20 (each >= 1)")
        sizes.append((parts[0], parts[1]))
    return sizes
