"""oneDNN fast paths for CPU inference, each with the plain PyTorch op as its fallback.

Why: eager PyTorch runs every elementwise op as its own pass over memory, and LITv2's early stages are large maps
with little arithmetic, so a saved pass is saved time. oneDNN (the kernels inductor's CPU backend calls) can apply
a bias or an activation inside the kernel that writes the tensor. The fast paths are taken only where they compute
what the plain ops compute (fp32: the same kernel family; bf16: where the plain op would also run in bf16) and
where nothing needs the plain graph: no autograd, no torch.compile / torch.export tracing, no FX proxy, no
TorchScript (callers check `torch.jit.is_scripting()` first).
"""

import torch
import torch.nn.functional as F
from torch import nn

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
    """`nn.Linear` (same parameters, state_dict and init) whose bf16 CPU inference adds the bias inside the GEMM.

    `F.linear` with a bias runs `addmm`, which first writes the broadcast bias into the whole output and then
    accumulates the product onto it: one extra pass over the output. On LITv2-S's stage-1 fc1 (50176 tokens, 96 ->
    384) under bf16 autocast on an AMX Xeon, `F.linear` took 12.0 ms, oneDNN's linear 6.9 ms and the GEMM without a
    bias 6.4 ms. oneDNN's linear applies the bias in its epilogue; the results are the same (both are oneDNN bf16
    GEMMs with fp32 accumulation). fp32 keeps `F.linear`: there the same swap gained nothing on the whole model
    (LITv2-S batch 16, same machine: 1.29 vs 1.27 s), as the first touch of a fresh output costs the same either way.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting() and self._bf16_epilogue(x):
            return self._linear_bf16(x)
        return F.linear(x, self.weight, self.bias)

    @torch.jit.unused
    def _bf16_epilogue(self, x: torch.Tensor) -> bool:
        return (
            inference_fast_path(x, self.weight)
            and HAS_FUSED_LINEAR
            and x.dim() >= 2
            and x.numel() > 0
            and runs_in_bf16(x, self.weight)
        )

    @torch.jit.unused
    def _linear_bf16(self, x: torch.Tensor) -> torch.Tensor:
        bf16 = torch.bfloat16
        bias = None if self.bias is None else self.bias.to(bf16)
        return torch.ops.mkldnn._linear_pointwise(x.to(bf16), self.weight.to(bf16), bias, "none", [], "")
