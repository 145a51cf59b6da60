"""Deformable token merging (DTM): LIT's learned, offset-driven 2x downsampling between stages."""

from typing import Callable

import torch
from timm.layers import register_notrace_module
from torch import nn
from torchvision.ops import DeformConv2d, deform_conv2d

from ._checks import check_map, check_positive_int


class OffsetDeformConv2d(DeformConv2d):
    """A deformable conv (v1, no modulation mask) that predicts its own offsets with a plain conv `conv_offset`.

    The arithmetic is `torchvision.ops.deform_conv2d`, which has CPU and CUDA kernels for forward and backward, in
    place of the official CUDA-only extension. Offset channel 2t is the row (y) offset of tap t, 2t + 1 its column
    (x) offset, the layout both use. `conv_offset` starts at zero, so a fresh DTM is exactly a strided conv and the
    offsets are learned from there.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 2, stride: int = 2, padding: int = 0):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=True)
        k = self.kernel_size
        self.conv_offset = nn.Conv2d(in_channels, 2 * k[0] * k[1], kernel_size, stride=stride, padding=padding)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        offset = self.conv_offset(x)
        dtype = x.dtype
        if x.device.type != "cuda" and (dtype not in (torch.float32, torch.float64) or offset.dtype != dtype):
            # torchvision's CPU kernel has no bf16 / fp16 (and autocast may hand it mixed dtypes): run the deformable
            # conv in fp32, as the official mixed-precision code forces it to, and return the input's dtype.
            out = deform_conv2d(
                x.float(),
                offset.float(),
                self.weight.float(),
                self.bias.float(),
                stride=self.stride,
                padding=self.padding,
            )
            return out.to(dtype)
        return deform_conv2d(x, offset, self.weight, self.bias, stride=self.stride, padding=self.padding)


@register_notrace_module
class DeformableTokenMerging(nn.Module):
    """(B, H, W, C_in) -> (B, floor(H/2), floor(W/2), C_out): 2x2 stride-2 deformable conv, BatchNorm, GELU.

    Odd sides are floored exactly as the official dense backbones do: the last row or column is reachable only
    through the learned offsets. Module names (`dconv`, `norm_layer`) follow the official checkpoints.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        act_layer: Callable[[], nn.Module] = nn.GELU,
    ):
        super().__init__()
        self.in_dim = check_positive_int("in_dim", in_dim)
        self.out_dim = check_positive_int("out_dim", out_dim)
        self.dconv = OffsetDeformConv2d(in_dim, out_dim, kernel_size=2, stride=2)
        self.norm_layer = nn.BatchNorm2d(out_dim)
        self.act_layer = act_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_map(x, self.in_dim, "DeformableTokenMerging input")
        if x.shape[1] < 2 or x.shape[2] < 2:
            raise ValueError(
                f"DeformableTokenMerging needs a map of at least 2x2 to merge, got {x.shape[1]}x{x.shape[2]}; "
                "use a larger input image"
            )
        x = self.dconv(x.permute(0, 3, 1, 2))  # (B, H, W, C) -> (B, C, H, W) view; -> (B, C_out, H', W')
        # One copy to a physically channels-last map: BatchNorm and GELU then run on it in place of layout, and the
        # next stage's residual stream is contiguous (B, H', W', C) (else every LayerNorm would copy it again).
        x = x.permute(0, 2, 3, 1).contiguous()  # (B, C, H', W') -> (B, H', W', C)
        x = self.norm_layer(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # BN on the channels_last view
        return self.act_layer(x)
