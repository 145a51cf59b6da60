"""One attention layer (HiLo, its matmul baseline, ViT MHSA, PVTv2 SRA, Swin W-MSA) at several token grids: the same
code as `litvit bench --attention` (all its options apply).

    python benchmarks/attention.py                               # dim 768, 12 heads, 14x14 / 28x28 / 56x56
    python benchmarks/attention.py --sizes 14 28 56 20x30 --threads 2
"""

import sys

from litvit.bench.cli import main

if __name__ == "__main__":
    sys.exit(main(["--attention", *sys.argv[1:]]))
