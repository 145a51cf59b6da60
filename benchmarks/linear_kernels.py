"""MKL's `addmm` (what `F.linear` runs on a CPU) against oneDNN's linear (`mkldnn::_linear_pointwise`, what
`litvit.layers.fused_cpu.Linear` runs in eager CPU inference) on this machine: per LITv2-S linear shape, and the
whole model side by side in one process (rounds interleaved, medians). Where onnxruntime is installed, the same
shapes also run as a one-node ONNX `Gemm` with a constant weight (ONNX Runtime's MLAS, weight pre-packed at session
start): what `litvit bench --runtime onnxruntime` gets for its linears.

    python benchmarks/linear_kernels.py --threads 2 [--model litv2_s] [--rounds 6]

Why: which of the two is faster depends on the CPU (docs/performance.md, "Speed work"); run this on a new machine
class before trusting either.
"""

import argparse
import statistics
import time
from typing import Callable, List, Optional, Tuple

import numpy as np
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
    (196, 1536, 384),
    (49, 768, 3072),
    (49, 3072, 768),
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


def ort_gemm(w: torch.Tensor, b: torch.Tensor) -> Optional[Callable[[np.ndarray], object]]:
    """x -> x @ w.T + b as an ONNX Runtime session with w and b constant (None without onnx / onnxruntime)."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    n, k = w.shape
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n])],
        [numpy_helper.from_array(w.numpy(), "w"), numpy_helper.from_array(b.numpy(), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=10)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = torch.get_num_threads(), 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # its threads must not spin into torch's
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": x})


def shape_rows(repeats: int) -> List[Tuple[str, float, float, Optional[float]]]:
    rows = []
    for m, k, n in SHAPES:
        x, w, b = torch.randn(m, k), torch.randn(n, k), torch.randn(n)
        mkl = median_time(lambda x=x, w=w, b=b: F.linear(x, w, b), repeats)
        onednn = median_time(lambda x=x, w=w, b=b: torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], ""), repeats)
        run, xn = ort_gemm(w, b), x.numpy()
        mlas = None if run is None else median_time(lambda run=run, xn=xn: run(xn), repeats)
        flop = 2 * m * k * n / 1e9
        rows.append((f"{m} x {k} -> {n}", flop / mkl, flop / onednn, None if mlas is None else flop / mlas))
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
    print("| linear (tokens x in -> out) | addmm GFLOP/s | oneDNN GFLOP/s | oneDNN / addmm | ONNX Runtime GFLOP/s |")
    print("|---|---|---|---|---|")
    with torch.no_grad():
        for shape, mkl, onednn, mlas in shape_rows(repeats=15):
            ort = "-" if mlas is None else f"{mlas:.0f}"
            print(f"| {shape} | {mkl:.0f} | {onednn:.0f} | {onednn / mkl:.2f}x | {ort} |")
    print(f"\n| {args.model} fp32 forward | addmm ms | oneDNN ms | speed-up |\n|---|---|---|---|")
    for batch in (16, 1):
        mkl, onednn = model_ab(args.model, batch, args.rounds if batch > 1 else 3 * args.rounds)
        print(f"| batch {batch} | {mkl * 1e3:.1f} | {onednn * 1e3:.1f} | {mkl / onednn:.3f}x |")


if __name__ == "__main__":
    main()
