"""Model throughput / latency / memory vs peers: the same code as `litvit bench` (all its options apply).

python benchmarks/models.py                                  # the paper's comparison, out/bench/
python benchmarks/models.py litv2_s swin_tiny_patch4_window7_224 --threads 2 --dtype bf16
"""

import sys

from litvit.bench.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
