"""Issue 13's per-op profile: LITv2-S against Swin-T, batch 16, 224, in fp32 inference, bf16 autocast inference and
the fp32 training step, one `litvit bench --profile` run each; their tables are joined into OUT/profile.md.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/op_profile.py --threads 2 --out out/profile

Extra arguments (e.g. --repeats 5, litvit bench's) go to every run.
"""

import argparse
import os
import sys
from pathlib import Path

from litvit.bench.cli import main
from litvit.bench.machine import native_bf16

PAIR = ["litv2_s", "swin_tiny_patch4_window7_224"]
RUNS = {
    "fp32_infer": ["--dtype", "fp32", "--mode", "infer"],
    "bf16_infer": ["--dtype", "bf16", "--mode", "infer"],
    "fp32_train": ["--dtype", "fp32", "--mode", "train"],
}


def run_all(argv: list) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", default="2")
    p.add_argument("--batch-size", default="16")
    p.add_argument("--out", type=Path, default=Path("out/profile"))
    args, extra = p.parse_known_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    runs = dict(RUNS)
    if native_bf16() is False:
        print("skipping the bf16 profile: this CPU has no native bf16 (avx512_bf16 / amx_bf16), where it is emulated")
        del runs["bf16_infer"]
    parts = []
    for name, flags in runs.items():
        out = args.out / name
        rc = main([*PAIR, "--profile", *flags, "--threads", args.threads, "--batch-size", args.batch_size, *extra,
                   "--out", str(out)])  # fmt: skip
        if rc != 0:
            return rc
        parts.append((out / "profile.md").read_text())
    (args.out / "profile.md").write_text("\n".join(parts))
    print(f"wrote {args.out / 'profile.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_all(sys.argv[1:]))
