"""MKL's `addmm` (what `F.linear` runs on a CPU) against oneDNN's linear (`mkldnn::_linear_pointwise`, what
`litvit.layers.fused_cpu.Linear` runs in eager CPU inference) on this machine: per LITv2-S linear shape, and the
whole model side by side in one process (rounds interleaved, medians).

    python benchmarks/linear_kernels.py --threads 2 [--model litv2_s] [--rounds 6]

Why: which of the two is faster depends on the CPU (docs/performance.md, "Speed work"); run this on a new machine
class before trusting either.
"""

import argparse
import statistics
import time
from typing import Callable, List, Tuple

import timm
import torch
import torch.nn.functional as F

import litvit.models  # noqa: F401  (registers the models with timm)
from litvit.allocator import keep_freed_memory
from litvit.bench.machine import cpu_model  # the lscpu model name
from litvit.layers import fused_cpu

# (tokens, in, out) of LITv2-S's linears at batch 16 (stage 1 is run one image at a time) and at batch 1
SHAPES = [
    (3136, 96, 384),
    (3136, 384, 96),
    (12544, 192, 768),
    (12544, 768, 192),
    (3136, 384, 1536),
    (3136, 1536, 384),
    (784, 768, 3072),
    (784, 3072, 768),
    (196, 384, 1536),
    (49, 768, 3072),
]


def median_time(fn: Callable[[], object], repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def shape_rows(repeats: int) -> List[Tuple[str, float, float]]:
    rows = []
    for m, k, n in SHAPES:
        x, w, b = torch.randn(m, k), torch.randn(n, k), torch.randn(n)
        mkl = median_time(lambda x=x, w=w, b=b: F.linear(x, w, b), repeats)
        onednn = median_time(lambda x=x, w=w, b=b: torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], ""), repeats)
        flop = 2 * m * k * n / 1e9
        rows.append((f"{m} x {k} -> {n}", flop / mkl, flop / onednn))
    return rows


def model_ab(name: str, batch: int, rounds: int) -> Tuple[float, float]:
    """Median forward seconds with the plain `F.linear` and with oneDNN's linear, alternating in each round."""
    model = timm.create_model(name).eval()
    x = torch.randn(batch, 3, 224, 224)
    own = fused_cpu._plain_fp32
    times: dict = {False: [], True: []}

    def forward(onednn: bool) -> float:
        fused_cpu._plain_fp32 = own if onednn else (lambda *_: False)
        start = time.perf_counter()
        model(x)
        return time.perf_counter() - start

    with torch.no_grad():
        for r in range(rounds + 1):
            for onednn in (False, True):
                t = forward(onednn)
                if r:  # the first round warms up
                    times[onednn].append(t)
    fused_cpu._plain_fp32 = own
    return statistics.median(times[False]), statistics.median(times[True])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--model", default="litv2_s")
    p.add_argument("--rounds", type=int, default=6)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory(True)
    print(f"{cpu_model()}, {args.threads} threads, torch {torch.__version__}\n")
    print("| linear (tokens x in -> out) | addmm GFLOP/s | oneDNN GFLOP/s | oneDNN / addmm |\n|---|---|---|---|")
    with torch.no_grad():
        for shape, mkl, onednn in shape_rows(repeats=15):
            print(f"| {shape} | {mkl:.0f} | {onednn:.0f} | {onednn / mkl:.2f}x |")
    print(f"\n| {args.model} fp32 forward | addmm ms | oneDNN ms | speed-up |\n|---|---|---|---|")
    for batch in (16, 1):
        mkl, onednn = model_ab(args.model, batch, args.rounds if batch > 1 else 3 * args.rounds)
        print(f"| batch {batch} | {mkl * 1e3:.1f} | {onednn * 1e3:.1f} | {mkl / onednn:.3f}x |")


if __name__ == "__main__":
    main()
