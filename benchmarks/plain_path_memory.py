"""Peak memory and data traffic of one LITv2 inference forward on the plain path (the ops a GPU runs), litvit against
the official forward (`litv2_s:official`), measured on the CPU: no GPU needed.

    python benchmarks/plain_path_memory.py [--model litv2_s] [--batch-size 64] [--dtype fp32 bf16]

Why: on a CPU litvit's eager inference takes its oneDNN fast paths, which allocate differently; a GPU runs the plain
ops. A pass-through dispatch mode turns the fast paths off (`layers.fused_cpu.inference_fast_path`), so the forward
runs the GPU's ops on the CPU, and the profiler's memory events give the peak of the bytes alive during it (the model's
weights and input not counted). Compare with `torch.cuda.max_memory_allocated` on a GPU (docs/performance.md, "GPU").
The same mode counts the ops that compute something (a GPU's kernels, roughly) and the bytes they read and write: what
bounds memory-bound kernels on a GPU.
"""

import argparse
import json
import os
import tempfile
from typing import Tuple

import timm
import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import litvit.models  # noqa: F401  (registers the models with timm)
from litvit.bench.machine import cpu_model  # the lscpu model name
from litvit.bench.official_style import official_style

MB = 2.0**20


class Traffic(TorchDispatchMode):
    """Runs every op as it is (its presence alone makes litvit take the plain ops) and counts the ops that write new
    memory, with the bytes of their tensor inputs and outputs; views and aliases (eval-mode dropout) are free."""

    def __init__(self) -> None:
        super().__init__()
        self.ops, self.bytes = 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        ins = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        outs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        read = {t.untyped_storage().data_ptr() for t in ins}
        if outs and all(t.untyped_storage().data_ptr() in read for t in outs):
            return out  # a view or an alias: no kernel, no traffic
        self.ops += 1
        self.bytes += sum(t.numel() * t.element_size() for t in ins + outs)
        return out


def measure(model: torch.nn.Module, x: torch.Tensor, dtype: str) -> Tuple[float, int, float]:
    """Peak bytes allocated during one forward above those alive at its start (MB), ops run, bytes they moved (GB)."""
    traffic = Traffic()
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=dtype == "bf16"):
        model(x)  # warm-up: first-call allocations do not count
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof, traffic:
            model(x)
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    finally:
        os.remove(path)
    totals = [e["args"]["Total Allocated"] for e in events if e.get("name") == "[memory]"]
    peak = (max(totals) - totals[0]) / MB if totals else float("nan")
    return peak, traffic.ops, traffic.bytes / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="litv2_s", choices=timm.list_models("litv2*"), help="a LITv2 classifier")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--dtype", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = timm.create_model(args.model).eval()
    official = official_style(model).eval()
    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size)
    print(f"{cpu_model()}, torch {torch.__version__}, {args.model}, batch {args.batch_size}, {args.img_size}")
    print("| dtype | peak MB: litvit | official | ops: litvit | official | GB moved: litvit | official |")
    print("|---|---|---|---|---|---|---|")
    for dtype in args.dtype:
        (peak, ops, moved), (peak_o, ops_o, moved_o) = measure(model, x, dtype), measure(official, x, dtype)
        print(f"| {dtype} | {peak:.0f} | {peak_o:.0f} | {ops} | {ops_o} | {moved:.2f} | {moved_o:.2f} |")


if __name__ == "__main__":
    main()
