"""Timing: interleaved rounds, their statistics, and the matmul probe that measures the machine's peak.

* `interleave` runs named tasks round-robin over R rounds (each turn `repeats` timed calls), rotating the start of
  each round, so that drift in the machine's speed (other jobs, thermal state, frequency) hits every task alike.
* `summarize`, `rate_summary`, `ratio_per_round`: medians with min-max, as the tables show them.
* `matmul_task`: a 2048 x 2048 fp32 product, timed as one more interleaved task; its rate is the "peak".

The clock is injectable (`clock=`), which is how the tests check the statistics and the ordering.
"""

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from ..errors import BenchError
from ..runtime import synchronizer

Clock = Callable[[], float]
Times = List[List[float]]  # seconds of each repeat, for each round
MATMUL = "@matmul"
MATMUL_BF16 = "@matmul-bf16"


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
    median, mean = statistics.median(values), statistics.fmean(values)
    return Summary(n=len(values), median=median, min=min(values), max=max(values), mean=mean)


def rate_summary(times: Sequence[float], items: float) -> Dict[str, float]:
    """Items per second from per-call durations: median from the median time, min from the slowest call, max from
    the fastest (so min <= median <= max holds)."""
    s = summarize(times)
    return {"median": items / s.median, "min": items / s.max, "max": items / s.min}


def flatten(times: Times) -> List[float]:
    return [t for round_times in times for t in round_times]


def ratio_per_round(times: Times, ref_times: Times, kind: str = "throughput") -> Dict[str, Any]:
    """A task vs a reference task, from medians taken within each round (both measured under the same load),
    summarised over rounds. kind 'throughput': rate ratio (ref time / time); 'latency': time / ref time."""
    ratios = []
    for mine, ref in zip(times, ref_times):
        m, r = summarize(mine).median, summarize(ref).median
        ratios.append(r / m if kind == "throughput" else m / r)
    s = summarize(ratios)
    return {"median": s.median, "min": s.min, "max": s.max, "per_round": ratios}


def round_order(names: Sequence[str], round_index: int) -> List[str]:
    """The order tasks run in during round `round_index`: round-robin, the start rotated by one each round."""
    if not names:
        return []
    k = round_index % len(names)
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
) -> Dict[str, Times]:
    """Time every task `repeats` times per turn, round-robin over `rounds` rounds, after `warmup` untimed calls each.

    Returns {name: [[seconds of each repeat] for each round]}. `sync` (e.g. torch.cuda.synchronize) runs before the
    clock is read on both sides of a call. `on_call(name, round, repeat, seconds)` is called after each timed call.
    `warmup_times`, when given, receives the duration of each warm-up call (the first one includes any compiling).
    """
    if rounds < 1 or repeats < 1:
        raise BenchError(f"rounds ({rounds}) and repeats ({repeats}) must both be >= 1")
    if warmup < 0:
        raise BenchError(f"warmup must be >= 0, got {warmup}")
    do_sync = sync or (lambda: None)

    def timed(fn: Callable[[], Any]) -> float:
        do_sync()
        t0 = clock()
        fn()
        do_sync()
        return clock() - t0

    for name, fn in tasks.items():
        for _ in range(warmup):
            dt = timed(fn)
            if warmup_times is not None:
                warmup_times.setdefault(name, []).append(dt)
    out: Dict[str, Times] = {name: [] for name in tasks}
    for r in range(rounds):
        for name in round_order(list(tasks), r):
            times = []
            for i in range(repeats):
                times.append(timed(tasks[name]))
                if on_call is not None:
                    on_call(name, r, i, times[-1])
            out[name].append(times)
    return out


def matmul_task(device: torch.device, n: int = 2048, dtype: torch.dtype = torch.float32) -> Callable[[], Any]:
    """One n x n @ n x n product (2 n^3 FLOPs) on fixed operands of `dtype`."""
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=g).to(device, dtype) for _ in range(2))
    out = torch.empty(n, n, device=device, dtype=dtype)
    return lambda: torch.mm(a, b, out=out)


def matmul_record(times: Times, n: int, dtype: str = "fp32") -> Dict[str, Any]:
    flops = 2.0 * n**3
    s = summarize(flatten(times))
    return {
        "n": n,
        "dtype": dtype,
        "flops_per_call": flops,
        "times_s": times,
        "summary_s": s.as_dict(),
        "gflops_median": flops / s.median / 1e9,
        "gflops_best": flops / s.min / 1e9,
    }


def time_with_matmul_peak(
    tasks: Dict[str, Callable[[], Any]],
    device: torch.device,
    rounds: int,
    repeats: int,
    warmup: int,
    matmul_n: int,
    say: Callable[[str], None],
    bf16_probe: bool = False,
) -> Tuple[Dict[str, Times], Dict[str, List[float]], Dict[str, Any]]:
    """Interleave `tasks` with the matmul probe; returns (raw times per task, warm-up times, matmul record).
    `say` reports each task's last call of every round. With `bf16_probe` a bf16 product of the same size runs
    beside it (the record's "bf16" entry): whether this CPU's bf16 GEMMs are faster than its fp32 ones at all."""

    def progress(name: str, r: int, i: int, dt: float) -> None:
        if i == repeats - 1:
            say(f"  round {r + 1}: {name} {dt * 1e3:.1f} ms (last of {repeats})")

    warm: Dict[str, List[float]] = {}
    all_tasks = dict(tasks, **{MATMUL: matmul_task(device, matmul_n)})
    if bf16_probe:
        all_tasks[MATMUL_BF16] = matmul_task(device, matmul_n, torch.bfloat16)
    raw = interleave(all_tasks, rounds, repeats, warmup, sync=synchronizer(device), on_call=progress, warmup_times=warm)
    record = matmul_record(raw.pop(MATMUL), matmul_n)
    if bf16_probe:
        record["bf16"] = matmul_record(raw.pop(MATMUL_BF16), matmul_n, "bf16")
    return raw, warm, record
