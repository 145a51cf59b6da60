"""Mixed precision: which dtype runs where, and the deformable convolution kept in fp32 under CPU autocast.

torchvision registers an autocast rule for `deform_conv2d` on CUDA only, and its CPU kernel has no bfloat16
version; the official trainers force the deformable convolution to fp32 under AMP. `enable_cpu_autocast_fp32_dcn`
adds the same rule for CPU autocast (inputs cast to fp32, the op run outside autocast).
"""

from typing import Optional

import torch

_LIB: Optional[torch.library.Library] = None


def amp_dtype(amp: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype for `--amp` on `device` (None = full fp32)."""
    if amp == "off" or (amp == "auto" and device.type == "cpu"):
        return None
    if amp == "fp16":
        if device.type == "cpu":
            from .config import ConfigError

            raise ConfigError("--amp fp16 needs a GPU; on CPU use --amp bf16 (or off)")
        return torch.float16
    if amp == "bf16":
        return torch.bfloat16
    # auto on a GPU: bf16 where the GPU has it (no loss scaling needed), else fp16 as the official runs
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def enable_cpu_autocast_fp32_dcn() -> None:
    """Run torchvision::deform_conv2d in fp32 under CPU autocast (idempotent)."""
    global _LIB
    if _LIB is not None:
        return
    import torchvision  # noqa: F401  (registers the op)

    if torch._C._dispatch_has_kernel_for_dispatch_key("torchvision::deform_conv2d", "AutocastCPU"):
        return
    lib = torch.library.Library("torchvision", "IMPL")

    def deform_conv2d_fp32(input, weight, offset, mask, bias, *args):  # noqa: ANN001, ANN002
        with torch.autocast("cpu", enabled=False):
            out = torch.ops.torchvision.deform_conv2d.default(
                input.float(), weight.float(), offset.float(), mask.float(), bias.float(), *args
            )
        return out.to(input.dtype) if input.dtype != torch.float32 else out

    lib.impl("deform_conv2d", deform_conv2d_fp32, "AutocastCPU")
    _LIB = lib
