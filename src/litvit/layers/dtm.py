"""Deformable token merging (DTM): LIT's learned, offset-driven 2x downsampling between stages."""

from typing import Callable, Tuple

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_module
from torch import nn
from torchvision.ops import DeformConv2d, deform_conv2d

from ._checks import check_map, check_positive_int
from ._flops import conv_flops
from .fused_cpu import inference_fast_path


def finite_offsets(offset: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """`offset` (B, 2 * kh * kw, H', W') with its non-finite entries set to 0, and a (B, 1, 1, 1) mask of the samples
    that had one.

    torchvision's deformable-conv kernel turns a NaN sample position into an out-of-range integer index and reads
    outside the input: on CPU one NaN pixel in an image kills the process (segfault; the CUDA kernel shares the
    indexing code). +-Inf positions are caught by its bounds test but flagged too: the image is not finite.
    Zeroed offsets keep the kernel in bounds; the caller then marks the output of the flagged samples as NaN
    (`poison`), so a non-finite image still gives a non-finite result, for that image only. Branch-free (no host
    sync, no graph break under torch.compile) and cheap: the offset map has 8 channels at the merged resolution.
    """
    finite = torch.isfinite(offset)
    bad = ~finite.flatten(1).all(dim=1)  # (B,)
    return offset.masked_fill(~finite, 0.0), bad.view(-1, 1, 1, 1)


def poison(out: torch.Tensor, bad: torch.Tensor) -> torch.Tensor:
    """NaN everywhere in the samples flagged by `finite_offsets` (a (B, 1, 1, 1) mask), `out` unchanged elsewhere.

    In place on a kernel's fresh output (whose backward does not need it): one write-only pass, no copy, a fraction
    of a percent of the deformable conv that produced it.
    """
    return out.masked_fill_(bad, float("nan"))


def deform_conv2x2_s2_nhwc(
    x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, precise: bool = True
) -> torch.Tensor:
    """2x2 stride-2 unpadded deformable conv (v1) on a channels-last map: 4 bilinear samples per output, 1 GEMM.

    x: (B, H, W, C_in); offset: (B, 8, H // 2, W // 2) with channel 2t = row (y) and 2t + 1 = column (x) offset of
    tap t = 2i + j; weight: (C_out, C_in, 2, 2). Returns (B, H // 2, W // 2, C_out).

    Equals `torchvision.ops.deform_conv2d` (the reference in the tests): a tap at (2ho + i + dy, 2wo + j + dx) is
    sampled bilinearly with zeros outside the map. The samples come from `F.grid_sample` (align_corners=True maps
    pixel centres to -1 / +1): with `precise`, full-precision inputs are sampled in fp64 (exact coordinates);
    otherwise, and for low-precision inputs (bf16, fp16, or an fp16 / bf16 `offset` from autocast), in fp32 (~1e-6
    pixel). The taps then go through one (4 * C_in -> C_out) GEMM in the input's dtype. Unlike the im2col kernel this
    reads and writes channels-last memory, runs in bf16, and its backward keeps only the input and the sampling grid.
    Its bilinear weights are rounded differently from torchvision's (which reproduces the official CUDA kernel's fp32
    rounding bit for bit): a ~1e-7 relative difference. A sample whose offsets are not all finite comes out NaN
    (see `finite_offsets`).
    """
    offset, bad = finite_offsets(offset)
    B, H, W, C = x.shape
    Ho, Wo = H // 2, W // 2
    full = x.dtype in (torch.float32, torch.float64) and offset.dtype == x.dtype
    exact = torch.float64 if full and precise else torch.float32
    off = offset.to(exact).permute(0, 2, 3, 1).reshape(B, Ho, Wo, 4, 2)  # (B, 8, Ho, Wo) -> (B, Ho, Wo, tap, [dy, dx])
    rows = torch.arange(Ho, device=x.device, dtype=exact) * 2
    cols = torch.arange(Wo, device=x.device, dtype=exact) * 2
    tap_i = torch.tensor([0.0, 0.0, 1.0, 1.0], device=x.device, dtype=exact)
    tap_j = torch.tensor([0.0, 1.0, 0.0, 1.0], device=x.device, dtype=exact)
    py = rows[:, None, None] + tap_i + off[..., 0]  # (B, Ho, Wo, 4) sample rows
    px = cols[None, :, None] + tap_j + off[..., 1]  # (B, Ho, Wo, 4) sample columns
    grid = torch.stack([px * (2.0 / (W - 1)) - 1.0, py * (2.0 / (H - 1)) - 1.0], dim=-1).reshape(B, Ho, Wo * 4, 2)
    taps = F.grid_sample(
        x.permute(0, 3, 1, 2).to(exact), grid, mode="bilinear", padding_mode="zeros", align_corners=True
    )
    # (B, C, Ho, Wo * 4) -> (B, Ho, Wo, C, tap) -> (B, Ho, Wo, 4 * C): columns ordered (c, i, j) as in the weight
    # and in torchvision's im2col, so the GEMM sums in the reference's order.
    taps = taps.reshape(B, C, Ho, Wo, 4).permute(0, 2, 3, 1, 4).to(x.dtype).reshape(B, Ho, Wo, 4 * C)
    w = weight.reshape(weight.shape[0], 4 * C)  # (C_out, C, i, j) -> (C_out, (c, i, j))
    return poison(F.linear(taps, w.to(taps.dtype), bias.to(taps.dtype)), bad)


def deform_conv2x2_s2_gather(
    x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """`deform_conv2x2_s2_nhwc` for fp32 inference with torchvision's sampling arithmetic, op for op.

    Same arguments and result. Every sample position, bilinear weight and weighted sum of 4 corners is computed
    in fp32 in the order of torchvision's CPU kernel (`deformable_im2col` / `bilinear_interpolate`: position
    2ho + i + dy, floor, lh = y - floor(y), hh = 1 - lh, w1 = hh * hw, ..., ((w1 * v1 + w2 * v2) + w3 * v3) + w4 * v4,
    zero outside (-1, H) x (-1, W)), so the sampled columns are torchvision's bit for bit; only the GEMM's summation
    order differs. Why not torchvision itself: its im2col walks NCHW planes one sample at a time and was 16% of
    LITv2-S's fp32 inference on an AMX Xeon; here the 4 corners of every sample are whole channel rows gathered from
    the zero-padded channels-last map.
    """
    offset, bad = finite_offsets(offset)
    B, H, W, C = x.shape
    Ho, Wo = H // 2, W // 2
    off = offset.permute(0, 2, 3, 1).reshape(B, Ho, Wo, 4, 2)  # (B, 8, Ho, Wo) -> (B, Ho, Wo, tap, [dy, dx])
    base_y = (torch.arange(Ho, device=x.device) * 2)[:, None, None] + torch.tensor([0, 0, 1, 1], device=x.device)
    base_x = (torch.arange(Wo, device=x.device) * 2)[None, :, None] + torch.tensor([0, 1, 0, 1], device=x.device)
    y = base_y.to(x.dtype) + off[..., 0]  # (B, Ho, Wo, 4): integer position + offset, one fp32 rounding
    xs = base_x.to(x.dtype) + off[..., 1]
    inside = (y > -1) & (y < H) & (xs > -1) & (xs < W)
    y0, x0 = y.floor(), xs.floor()
    ly, lx = y - y0, xs - x0
    hy, hx = 1 - ly, 1 - lx
    weights = (hy * hx, hy * lx, ly * hx, ly * lx)  # w1..w4
    # Corner rows of the map zero-padded by 1 pixel on the top / left and 2 on the bottom / right: (y0 + 1, x0 + 1) is
    # a sample's top-left corner; a sample outside the map reads the all-zero 2x2 block at (H + 1, W + 1), so it is
    # exactly 0 (as torchvision returns it) without reading any pixel.
    Hp, Wp = H + 3, W + 3
    batch = (torch.arange(B, device=x.device) * (Hp * Wp)).view(B, 1, 1, 1)
    inner = (y0.clamp(-1, H - 1).long() + 1) * Wp + (x0.clamp(-1, W - 1).long() + 1)
    top_left = batch + torch.where(inside, inner, (H + 1) * Wp + W + 1)  # (B, Ho, Wo, 4)
    rows = F.pad(x, (0, 0, 1, 2, 1, 2)).reshape(-1, C)  # (B * Hp * Wp, C)
    out = None
    for corner, w in zip((0, 1, Wp, Wp + 1), weights):  # v1 (y0, x0), v2 (y0, x1), v3 (y1, x0), v4 (y1, x1)
        term = rows.index_select(0, (top_left + corner).reshape(-1)).view(B, Ho, Wo, 4, C) * w.unsqueeze(-1)
        out = term if out is None else out.add_(term)
    assert out is not None
    # (B, Ho, Wo, tap, C) columns against the weight reordered to (C_out, tap, C_in): (C_out, C_in, i, j) permuted
    w2d = weight.permute(0, 2, 3, 1).reshape(weight.shape[0], 4 * C)
    return poison(F.linear(out.reshape(B, Ho, Wo, 4 * C), w2d, bias), bad)


class OffsetDeformConv2d(DeformConv2d):
    """A deformable conv (v1, no modulation mask) that predicts its own offsets with a plain conv `conv_offset`.

    `forward` (NCHW) is `torchvision.ops.deform_conv2d`, which has CPU and CUDA kernels for forward and backward, in
    place of the official CUDA-only extension. `forward_nhwc` serves DTM's channels-last maps. In fp32 it uses
    torchvision's arithmetic, which matches the official kernel to the last bit: in eager CPU inference as
    `deform_conv2x2_s2_gather` (the same sampled columns, 2-3x faster), elsewhere torchvision's op. In training
    (grad enabled), in bf16 / fp16 and under autocast (for which torchvision has no CPU kernel), the 2x2 / stride-2
    case goes through `deform_conv2x2_s2_nhwc`: 4-9x faster, a far cheaper backward, and the same function up to
    rounding.
    `sampled_fp32 = True` takes that path in fp32 evaluation too (~1e-7 relative from the official rounding). Offset
    channel 2t is the row (y) offset of tap t, 2t + 1 its column (x) offset, the layout both use. `conv_offset` starts
    at zero, so a fresh DTM is exactly a strided conv and the offsets are learned from there.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 2, stride: int = 2, padding: int = 0):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=True)
        k = self.kernel_size
        self.conv_offset = nn.Conv2d(in_channels, 2 * k[0] * k[1], kernel_size, stride=stride, padding=padding)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)
        self.two_by_two = self.kernel_size == (2, 2) and self.stride == (2, 2) and self.padding == (0, 0)
        self.sampled_fp32 = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """(B, C_in, H, W) -> (B, C_out, H', W') through torchvision's kernel."""
        return self._torchvision(x, self.conv_offset(x))

    def forward_nhwc(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C_in) -> (B, H', W', C_out)."""
        offset = self.conv_offset(x.permute(0, 3, 1, 2))  # the channels-last view feeds the conv directly
        low_precision = x.dtype not in (torch.float32, torch.float64) or offset.dtype != x.dtype  # or autocast
        training = self.training and torch.is_grad_enabled()
        if self.two_by_two and (low_precision or training or self.sampled_fp32):
            return deform_conv2x2_s2_nhwc(x, offset, self.weight, self.bias, precise=not training)
        if self.two_by_two and not torch.jit.is_scripting() and self._gather_fp32(x):
            return deform_conv2x2_s2_gather(x, offset, self.weight, self.bias)
        return self._torchvision(x.permute(0, 3, 1, 2), offset).permute(0, 2, 3, 1)

    @torch.jit.unused
    def _gather_fp32(self, x: torch.Tensor) -> bool:
        """fp32 eager CPU inference: torchvision's sampling done as channel-row gathers (same columns, 2-3x faster).
        Traced graphs (torch.compile, torch.export, ONNX) keep torchvision's op, which ONNX exports as DeformConv."""
        return inference_fast_path(x, self.weight) and x.dtype == self.weight.dtype == torch.float32

    def _torchvision(self, x: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) and offsets -> (B, C_out, H', W'); NaN for a sample with non-finite offsets (which would
        make torchvision's kernel read out of bounds, see `finite_offsets`)."""
        offset, bad = finite_offsets(offset)
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
            return poison(out.to(dtype), bad)
        out = deform_conv2d(x, offset, self.weight, self.bias, stride=self.stride, padding=self.padding)
        return poison(out, bad)


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
        # (B, H, W, C) -> (B, H', W', C_out), contiguous: BatchNorm and GELU run on it as a channels_last NCHW view,
        # and the next stage's residual stream is contiguous (else every LayerNorm would copy it).
        x = self.dconv.forward_nhwc(x).contiguous()
        x = self.norm_layer(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.act_layer(x)

    def flops(self, H: int, W: int) -> int:
        """MACs on an H x W input map, official rule: the offset conv, counted with 12 output channels although it
        has 8 (an official quirk, kept so the totals match), the deformable conv as a plain 2x2 conv, one MAC per
        output element for BatchNorm. Bilinear sampling and GELU are not counted."""
        offset = conv_flops(2, self.in_dim, 12, 2, 0, H, W)
        deform = conv_flops(2, self.in_dim, self.out_dim, 2, 0, H, W)
        return offset + deform + (H // 2) * (W // 2) * self.out_dim
