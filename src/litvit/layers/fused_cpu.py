"""oneDNN fast paths for CPU inference, each with the plain PyTorch op as its fallback.

Why: eager PyTorch runs every elementwise op as its own pass over memory, and LITv2's early stages are large maps
with little arithmetic, so a saved pass is saved time. oneDNN (the kernels inductor's CPU backend calls) can apply
a bias or an activation inside the kernel that writes the tensor. The fast paths are taken only where they compute
what the plain ops compute (fp32: the same sums, up to their order; bf16: where the plain op would also run in bf16)
and where nothing needs the plain graph: no autograd, no torch.compile / torch.export / torch.jit tracing, no
dispatch mode (a FLOP counter, fake tensors), no FX proxy, no TorchScript (callers check `torch.jit.is_scripting()`
first).
"""

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

__all__ = ["HAS_FUSED_CONV", "HAS_FUSED_LINEAR", "ONEDNN_BF16", "Linear", "inference_fast_path", "runs_in_bf16"]


def _bf16_probe() -> bool:
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(probe is not None and probe())


# Probed once at import: torch.compile must not trace the probes (it refuses torch.backends' functions).
_MKLDNN = torch.backends.mkldnn.is_available()
HAS_FUSED_CONV = _MKLDNN and hasattr(torch.ops.mkldnn, "_convolution_pointwise")  # conv + pointwise op in one kernel
HAS_FUSED_LINEAR = _MKLDNN and hasattr(torch.ops.mkldnn, "_linear_pointwise")  # linear with the bias in the epilogue
ONEDNN_BF16 = _MKLDNN and _bf16_probe()  # oneDNN has bf16 kernels (AVX-512; in hardware with AVX512-BF16 / AMX)


@torch.jit.unused
def inference_fast_path(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Eager CPU inference on a real tensor: the case a fused oneDNN kernel may replace the plain ops in."""
    return (
        isinstance(x, torch.Tensor)  # not an FX proxy: tracing records the plain path
        and not torch.compiler.is_compiling()  # torch.compile / torch.export trace the plain ops
        and not torch.jit.is_tracing()  # so does torch.jit.trace (and the TorchScript ONNX exporter)
        and not is_in_torch_dispatch_mode()  # FlopCounterMode, fake tensors, ...: they know the plain ops
        and not torch.is_grad_enabled()
        and weight.device.type == "cpu"
        and x.device.type == "cpu"
    )


@torch.jit.unused
def runs_in_bf16(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """The plain op would run in bf16 here (CPU autocast to bf16, or bf16 weights and input) and oneDNN has bf16
    kernels (not on AVX2-only CPUs, where the plain path stays); x is already bf16 or would be cast by autocast."""
    if weight.dtype == torch.bfloat16:
        return x.dtype == torch.bfloat16 and ONEDNN_BF16
    autocast_bf16 = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    castable = weight.dtype == torch.float32 and x.dtype in (torch.float32, torch.bfloat16)
    return autocast_bf16 and castable and ONEDNN_BF16


class Linear(nn.Linear):
    """`nn.Linear` (same parameters, state_dict and init) whose CPU inference runs oneDNN's GEMM, bias in its epilogue.

    `F.linear` on a CPU is `addmm` in MKL: it first writes the broadcast bias into the whole output, then accumulates
    the product onto it (one extra pass over the output), and MKL's fp32 GEMM is tuned for Intel's cores. oneDNN's
    linear applies the bias in its epilogue and has its own AVX-512 / AVX2 kernels. bf16 (AMX Xeon, LITv2-S stage-1
    fc1 under autocast): `F.linear` 12.0 ms, oneDNN 6.9 ms, the GEMM without a bias 6.4 ms; the same results (both
    oneDNN bf16 GEMMs with fp32 accumulation). fp32 (AMD EPYC with AVX-512, 2 threads, every LITv2-S linear shape at
    batch 16 and batch 1): oneDNN 0.94-1.72x MKL's `addmm` over two runs, LITv2-S's forward 1.06x at batch 16 and
    1.09x at batch 1 (benchmarks/linear_kernels.py); on an AVX2-only AMD EPYC 0.96-1.66x per shape, the forward 1.04x
    at batch 16 and 1.14x at batch 1; on both Intel classes measured the two were even. fp32 results
    differ from `F.linear`'s only in summation order (~1e-6 relative). Training, autocast to another dtype, tracing
    and other devices keep `F.linear`.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            dtype = self._onednn_dtype(x)
            if dtype is not None:
                bias = None if self.bias is None else self.bias.to(dtype)
                return torch.ops.mkldnn._linear_pointwise(x.to(dtype), self.weight.to(dtype), bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)

    @torch.jit.unused
    def _onednn_dtype(self, x: torch.Tensor) -> Optional[torch.dtype]:
        """The dtype oneDNN's linear computes this call in (bf16 or fp32), None where `F.linear` must run."""
        if not (inference_fast_path(x, self.weight) and HAS_FUSED_LINEAR and x.dim() >= 2 and x.numel() > 0):
            return None
        if runs_in_bf16(x, self.weight):
            return torch.bfloat16
        return torch.float32 if _plain_fp32(x, self.weight) else None


@torch.jit.unused
def _plain_fp32(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """fp32 input and weight, and no CPU autocast that would cast them to another dtype."""
    return x.dtype == weight.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
