"""A model's large-batch CPU inference run whole against run in batch slices (`litvit.layers.batch_slices`), side by
side in one process (rounds interleaved, per-round ratios), with malloc's default and with freed memory kept
(`litvit.allocator.keep_freed_memory`, what every `litvit` command does): each in its own process, since the
allocator change cannot be undone.

    python benchmarks/batch_slices.py --threads 2 [--model litv2_s] [--batches 16 64] [--dtype fp32 bf16] [--rounds 4]

Why: the slices exist to keep maps under glibc's mmap threshold; where the process keeps freed memory they only
shrink the GEMMs and add a `cat`. `batch_slices.images_per_slice` follows the allocator; run this on a new machine
class to check that the rule still pays there (docs/performance.md, "Speed work").
"""

import argparse
import statistics
import subprocess
import sys
import time

import timm
import torch

import litvit.models  # noqa: F401  (registers the models with timm)
from litvit import allocator
from litvit.bench.machine import cpu_model  # the lscpu model name
from litvit.layers import batch_slices

FORCE = {"whole": lambda: 1 << 62, "sliced": lambda: allocator.GLIBC_MMAP_CEILING}


def ab(model: torch.nn.Module, batch: int, dtype: str, rounds: int) -> dict:
    """Median seconds per forward run whole and in slices, and the median per-round ratio sliced / whole."""
    x = torch.randn(batch, 3, 224, 224)
    times: dict = {k: [] for k in FORCE}
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=dtype == "bf16"):
        for r in range(rounds + 1):
            for kind, threshold in FORCE.items():
                batch_slices.mmap_threshold = threshold
                start = time.perf_counter()
                model(x)
                if r:  # the first round warms up
                    times[kind].append(time.perf_counter() - start)
    ratios = [s / w for s, w in zip(times["sliced"], times["whole"])]
    return {k: statistics.median(v) for k, v in times.items()} | {"ratio": statistics.median(ratios)}


def child(args: argparse.Namespace, keep: bool) -> None:
    torch.set_num_threads(args.threads)
    if keep:
        allocator.keep_freed_memory(True)
    model = timm.create_model(args.model).eval()
    for dtype in args.dtype:
        for batch in args.batches:
            r = ab(model, batch, dtype, args.rounds)
            malloc = "freed memory kept" if keep else "default"
            whole, sliced = r["whole"] * 1e3, r["sliced"] * 1e3
            print(f"| {malloc} | {dtype} | {batch} | {whole:.0f} | {sliced:.0f} | {r['ratio']:.3f}x |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--model", default="litv2_s")
    p.add_argument("--batches", type=int, nargs="+", default=[16, 64])
    p.add_argument("--dtype", nargs="+", choices=["fp32", "bf16"], default=["fp32"])
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--child", choices=["keep", "default"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args, keep=args.child == "keep")
        return
    print(f"{cpu_model()}, {args.threads} threads, torch {torch.__version__}, {args.model}\n")
    print("| malloc | precision | batch | whole ms | sliced ms | whole's speed-up (per round) |")
    print("|---|---|---|---|---|---|")
    for mode in ("keep", "default"):
        subprocess.run([sys.executable, *sys.argv, "--child", mode], check=True)


if __name__ == "__main__":
    main()
