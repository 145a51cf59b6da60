"""The CPU targets of docs/performance.md in one go (LITv2-S vs Swin-T and vs the official code's forward over the
same weights, `litv2_s:official`; 224, batch 16, medians), each its own run.

    python benchmarks/targets.py --threads 2 --out out/targets
    OMP_WAIT_POLICY=PASSIVE python benchmarks/targets.py --threads 2   # where other jobs share the cores

(On a virtual machine PASSIVE costs time of its own when the host is busy: docs/performance.md, "Measuring on a
shared machine".)

Runs, in order: fp32 inference (+ batch-1 latency, peak RSS), bf16 autocast inference (logit check), fp32 training
step, and the attention layer benchmark; each writes table.md / results.json / plot.png in its own sub-folder.
Extra arguments (e.g. --rounds 5) go to every model run.
"""

import argparse
import sys
from pathlib import Path

from litvit.bench.cli import main
from litvit.bench.machine import native_bf16

PAIR = ["litv2_s", "swin_tiny_patch4_window7_224"]
OFFICIAL = "litv2_s:official"  # the official forward over the same weights (litvit.bench.official_style)


def run_all(argv: list) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", default="2")
    p.add_argument("--out", type=Path, default=Path("out/targets"))
    p.add_argument("--device", default="cpu")
    args, extra = p.parse_known_args(argv)
    gpu = args.device.startswith("cuda")
    common = ["--threads", args.threads, "--device", args.device, *extra]
    batch = ["--batch-size", "64" if gpu else "16"]
    runs = {
        "fp32_infer": [*PAIR, OFFICIAL, *batch, "--dtype", "fp32", "--mode", "infer"],
        "lowp_infer": [*PAIR, OFFICIAL, *batch, "--dtype", "fp16" if gpu else "bf16", "--no-latency", "--no-memory"],
        "fp32_train": [*PAIR, OFFICIAL, *batch, "--dtype", "fp32", "--mode", "train", "--no-latency"],
        "attention": ["--attention"],
    }
    if not gpu and native_bf16() is False:
        print("skipping bf16 inference: this CPU has no native bf16 (avx512_bf16 / amx_bf16), where it is emulated")
        del runs["lowp_infer"]
    if gpu:
        runs["amp_train"] = [*PAIR, OFFICIAL, *batch, "--dtype", "fp16", "--mode", "train", "--no-latency"]
        runs["attention_fp16"] = ["--attention", "--dtype", "fp16", "--no-memory"]
    for name, run in runs.items():
        rc = main([*run, *common, "--out", str(args.out / name)])
        if rc != 0:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(run_all(sys.argv[1:]))
