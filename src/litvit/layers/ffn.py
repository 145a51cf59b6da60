"""Feed-forward networks: LIT's plain MLP (timm's `Mlp`) and LITv2's MLP with a depthwise 3x3 conv."""

import math
from typing import Callable

import torch
import torch.nn.functional as F
from timm.layers import Mlp as _TimmMlp
from torch import nn

from ._checks import check_map
from ._flops import conv_flops
from .fused_cpu import HAS_FUSED_CONV, Linear, inference_fast_path, runs_in_bf16

__all__ = ["Mlp", "DWConv", "DWConvMlp"]


class Mlp(_TimmMlp):
    """timm's `Mlp` (fc1 -> GELU -> fc2, same modules and state_dict keys), plus the official per-module count.

    A subclass rather than a wrapper so the checkpoint keys stay `mlp.fc1.*` / `mlp.fc2.*`.
    """

    def flops(self, H: int, W: int) -> int:
        """MACs on H x W tokens, official rule: the two linear layers, biases and GELU not counted."""
        n = H * W
        return n * self.fc1.in_features * self.fc1.out_features + n * self.fc2.in_features * self.fc2.out_features


class DWConv(nn.Module):
    """Depthwise 3x3 conv over a (B, H, W, C) map.

    Kept as its own module (rather than a bare Conv2d in the MLP) because the official key is `mlp.dwconv.dwconv`.
    The map stays channels-last: the permute below is a view, and the conv runs on a channels-last NCHW tensor,
    which avoids the two copies the official token -> NCHW -> token round trip makes.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1, groups=dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dwconv(x.permute(0, 3, 1, 2))  # (B, H, W, C) -> (B, C, H, W), channels-last strides
        return x.permute(0, 2, 3, 1)  # (B, C, H, W) -> (B, H, W, C)

    def flops(self, H: int, W: int) -> int:
        """Official conv count: 9 MACs and one bias add per output element (10 * C * H * W)."""
        c = self.dwconv.in_channels
        return conv_flops(3, c, c, 1, 1, H, W, groups=self.dwconv.groups)


class DWConvMlp(nn.Module):
    """LITv2 FFN: fc1 -> depthwise 3x3 conv -> GELU -> fc2, on a (B, H, W, C) map.

    The conv sits between fc1 and the activation with no residual or norm around it; that placement is what gives
    the attention-free early stages their local mixing (and what makes LITv2 need no position embedding).
    """

    # True while litvit.export.onnx traces the model: the same FFN written as three convolutions (`_forward_as_convs`)
    pointwise_as_conv = False

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        drop: float = 0.0,
    ):
        super().__init__()
        self.in_features = in_features
        self.fc1 = Linear(in_features, hidden_features)
        self.dwconv = DWConv(hidden_features)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = Linear(hidden_features, in_features)
        self.drop2 = nn.Dropout(drop)
        self.reset_dwconv()

    def reset_dwconv(self) -> None:
        """He-normal over the depthwise fan-out (9), as the official code initialises it at construction."""
        conv = self.dwconv.dwconv
        fan_out = conv.kernel_size[0] * conv.kernel_size[1] * conv.out_channels // conv.groups
        nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / fan_out))
        nn.init.zeros_(conv.bias)

    @torch.jit.unused
    def _fusable(self, x: torch.Tensor) -> bool:
        """CPU inference with exact GELU, in eager mode, in fp32 or in bf16 where oneDNN has bf16 kernels
        (`fused_cpu.ONEDNN_BF16`): depthwise conv and GELU can run as one oneDNN kernel.

        bf16 covers autocast (fc1's output is bf16, the weights fp32) and a model cast to bf16. On AVX2-only CPUs
        (no oneDNN bf16) the plain path stays. Under torch.compile the plain path is traced: inductor fuses conv + GELU
        itself, and its fake kernel of the oneDNN op promises a channels-last output the real op does not give when
        inductor freezes the weights (an assertion at the first call, torch 2.14 on an AMX Xeon)."""
        w = self.dwconv.dwconv.weight
        exact_gelu = type(self.act) is nn.GELU and self.act.approximate == "none"
        if not (inference_fast_path(x, w) and HAS_FUSED_CONV and exact_gelu):
            return False
        return runs_in_bf16(x, w) or x.dtype == w.dtype == torch.float32

    @torch.jit.unused
    def _dwconv_gelu_fused(self, x: torch.Tensor) -> torch.Tensor:
        """One pass over the (large, early-stage) hidden map instead of two: conv and GELU fused by oneDNN.

        In bf16 it is also closer to fp32 than the plain path: GELU reads the conv's fp32 accumulator rather than
        its bf16-rounded output (LITv2-S stage-1 shapes: max error 0.015 vs 0.022)."""
        conv = self.dwconv.dwconv
        dtype = torch.bfloat16 if runs_in_bf16(x, conv.weight) else torch.float32
        weight, bias = conv.weight.to(dtype), conv.bias.to(dtype)
        y = torch.ops.mkldnn._convolution_pointwise(
            x.to(dtype).permute(0, 3, 1, 2), weight, bias, [1, 1], [1, 1], [1, 1], conv.groups, "gelu", [], "none"
        )
        return y.permute(0, 2, 3, 1)  # channels_last (B, C, H, W) -> contiguous (B, H, W, C)

    @torch.jit.unused
    def _as_convs(self) -> bool:
        return self.pointwise_as_conv

    @torch.jit.unused
    def _forward_as_convs(self, x: torch.Tensor) -> torch.Tensor:
        """fc1 and fc2 as 1x1 convolutions on the NCHW view: the same arithmetic, as the graph the ONNX export writes.

        Why: ONNX Runtime's CPU provider runs convolutions in a blocked channels layout (NCHWc) and converts a map into
        it and back around each run of convolutions. As MatMul -> depthwise Conv -> MatMul, the 4x wider hidden map is
        converted twice per FFN; as three Convs, only the narrow input and output are. On LITv2-S (batch 16, 224, 2
        threads, an AMX Xeon) ONNX Runtime went from 0.93x to 1.34x the eager fp32 speed (docs/performance.md)."""
        x = x.permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W), a view
        x = F.conv2d(x, self.fc1.weight[:, :, None, None], self.fc1.bias)  # (B, hidden, H, W)
        x = self.drop1(self.act(self.dwconv.dwconv(x)))
        x = F.conv2d(x, self.fc2.weight[:, :, None, None], self.fc2.bias)  # (B, C, H, W)
        return self.drop2(x.permute(0, 2, 3, 1))  # (B, C, H, W) -> (B, H, W, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) map -> (B, H, W, C)."""
        check_map(x, self.in_features, "DWConvMlp input")
        if not torch.jit.is_scripting() and self._as_convs():
            return self._forward_as_convs(x)
        x = self.fc1(x)
        if not torch.jit.is_scripting() and self._fusable(x):
            x = self._dwconv_gelu_fused(x)
        else:
            x = self.dwconv(x)  # own statement: fc1's output is freed before GELU allocates (one hidden map fewer)
            x = self.act(x)
        x = self.drop1(x)
        x = self.fc2(x)
        return self.drop2(x)

    def flops(self, H: int, W: int) -> int:
        """MACs on an H x W map, official rule: fc1 and fc2 (no biases), plus the depthwise conv with its bias."""
        n = H * W
        linear = n * self.fc1.in_features * self.fc1.out_features + n * self.fc2.in_features * self.fc2.out_features
        return linear + self.dwconv.flops(H, W)
