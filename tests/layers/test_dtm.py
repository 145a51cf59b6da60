"""Deformable token merging against ARCHITECTURE.md §2.2: plain strided conv at zero offsets, and a scalar
re-statement of the deformable-conv-v1 bilinear sampling rule with non-zero offsets."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from litvit.layers import DeformableTokenMerging, OffsetDeformConv2d

TOL = 1e-5


def _randomize_bn(bn: nn.BatchNorm2d, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(bn.num_features, generator=g))
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=g))
        bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)


def _sample(img: torch.Tensor, y: float, x: float) -> torch.Tensor:
    """Bilinear sample of img (C, H, W) at (y, x): zero unless -1 < y < H and -1 < x < W; neighbours outside
    [0, H-1] x [0, W-1] contribute zero."""
    C, H, W = img.shape
    if not (-1 < y < H and -1 < x < W):
        return torch.zeros(C, dtype=img.dtype)
    y0, x0 = math.floor(y), math.floor(x)
    ly, lx = y - y0, x - x0
    val = torch.zeros(C, dtype=img.dtype)
    for yy, xx, w in (
        (y0, x0, (1 - ly) * (1 - lx)),
        (y0, x0 + 1, (1 - ly) * lx),
        (y0 + 1, x0, ly * (1 - lx)),
        (y0 + 1, x0 + 1, ly * lx),
    ):
        if 0 <= yy <= H - 1 and 0 <= xx <= W - 1:
            val = val + w * img[:, yy, xx]
    return val


def deform_conv_reference(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor):
    """Kernel 2, stride 2, pad 0, one deformable group. x (B, C, H, W) float64, offset (B, 8, Ho, Wo)."""
    B, C, H, W = x.shape
    Ho, Wo = offset.shape[2], offset.shape[3]
    out = torch.zeros(B, weight.shape[0], Ho, Wo, dtype=x.dtype)
    for b in range(B):
        for ho in range(Ho):
            for wo in range(Wo):
                acc = bias.clone()
                for i in range(2):
                    for j in range(2):
                        t = i * 2 + j
                        dy = offset[b, 2 * t, ho, wo].item()
                        dx = offset[b, 2 * t + 1, ho, wo].item()
                        v = _sample(x[b], 2 * ho + i + dy, 2 * wo + j + dx)  # (C,)
                        acc = acc + weight[:, :, i, j] @ v
                out[b, :, ho, wo] = acc
    return out


# ------------------------------------------------------------------------------------------------ zero offsets


def test_offsets_initialised_to_zero():
    m = DeformableTokenMerging(4, 8)
    assert torch.count_nonzero(m.dconv.conv_offset.weight) == 0
    assert torch.count_nonzero(m.dconv.conv_offset.bias) == 0
    assert m.dconv.conv_offset.weight.shape == (8, 4, 2, 2)
    assert m.dconv.weight.shape == (8, 4, 2, 2)


def test_state_dict_keys():
    keys = list(DeformableTokenMerging(4, 8).state_dict().keys())
    assert keys == [
        "dconv.weight",
        "dconv.bias",
        "dconv.conv_offset.weight",
        "dconv.conv_offset.bias",
        "norm_layer.weight",
        "norm_layer.bias",
        "norm_layer.running_mean",
        "norm_layer.running_var",
        "norm_layer.num_batches_tracked",
    ]


@pytest.mark.parametrize(
    "size,out_size", [((8, 8), (4, 4)), ((6, 10), (3, 5)), ((7, 9), (3, 4)), ((2, 2), (1, 1)), ((5, 3), (2, 1))]
)
def test_zero_offsets_equal_strided_conv_bn_gelu(size, out_size):
    torch.manual_seed(0)
    m = DeformableTokenMerging(6, 10)
    _randomize_bn(m.norm_layer)
    m.eval()
    x = torch.randn(2, *size, 6)
    with torch.no_grad():
        out = m(x)
        conv = nn.Conv2d(6, 10, 2, stride=2)
        conv.weight.copy_(m.dconv.weight)
        conv.bias.copy_(m.dconv.bias)
        ref = F.gelu(m.norm_layer(conv(x.permute(0, 3, 1, 2)))).permute(0, 2, 3, 1)
    assert out.shape == (2, *out_size, 10)
    assert (out - ref).abs().max() <= TOL


# ------------------------------------------------------------------------------------------------ non-zero offsets


@pytest.mark.parametrize("size", [(6, 8), (7, 5)])
def test_nonzero_offsets_match_reference(size):
    torch.manual_seed(1)
    C_in, C_out = 3, 5
    conv = OffsetDeformConv2d(C_in, C_out).eval()
    with torch.no_grad():
        conv.conv_offset.weight.copy_(torch.randn_like(conv.conv_offset.weight) * 0.5)
        conv.conv_offset.bias.copy_((torch.rand(8) - 0.5) * 3.0)
    x = torch.randn(2, C_in, *size)
    with torch.no_grad():
        out = conv(x)
        offset = conv.conv_offset(x)

    # The offsets must exercise the boundary rule: some sample points fully outside, some in (-1, 0) or
    # (H-1, H) (partly outside neighbours), and fractional values everywhere.
    H, W = size
    Ho, Wo = offset.shape[2:]
    base_y = (2 * torch.arange(Ho)).view(1, 1, Ho, 1) + torch.tensor([0, 0, 1, 1]).view(1, 4, 1, 1)
    base_x = (2 * torch.arange(Wo)).view(1, 1, 1, Wo) + torch.tensor([0, 1, 0, 1]).view(1, 4, 1, 1)
    ys = base_y + offset[:, 0::2]
    xs = base_x + offset[:, 1::2]
    outside = (ys <= -1) | (ys >= H) | (xs <= -1) | (xs >= W)
    partial = ~outside & ((ys < 0) | (ys > H - 1) | (xs < 0) | (xs > W - 1))
    assert outside.any(), "offsets do not push any sample outside the map"
    assert partial.any(), "no sample straddles the border"
    assert (~outside & ~partial).any()
    assert (offset != offset.round()).all()

    ref = deform_conv_reference(x.double(), offset.double(), conv.weight.double(), conv.bias.double())
    assert out.shape == ref.shape == (2, C_out, H // 2, W // 2)
    assert (out.double() - ref).abs().max() <= TOL


def test_offset_channel_order_is_dy_then_dx():
    """A pure row shift of +1 on every tap (channels 0, 2, 4, 6) equals the conv on the map shifted up by one."""
    torch.manual_seed(2)
    conv = OffsetDeformConv2d(2, 3).eval()
    with torch.no_grad():
        conv.conv_offset.bias.copy_(torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]))
    x = torch.randn(1, 2, 6, 6)
    with torch.no_grad():
        out = conv(x)
        shifted = F.pad(x[:, :, 1:], (0, 0, 0, 1))  # row r of `shifted` is row r + 1 of x, zero below
        ref = F.conv2d(shifted, conv.weight, conv.bias, stride=2)
    assert (out - ref).abs().max() <= TOL


# ------------------------------------------------------------------------------------------------ gradients


def test_gradient_reaches_conv_offset():
    torch.manual_seed(3)
    m = DeformableTokenMerging(4, 6).train()
    x = torch.randn(2, 6, 6, 4)
    out = m(x)
    (out * torch.randn_like(out)).sum().backward()
    g = m.dconv.conv_offset.weight.grad
    assert g is not None
    assert g.abs().sum() > 0
    assert m.dconv.conv_offset.bias.grad is not None and m.dconv.conv_offset.bias.grad.abs().sum() > 0
    assert m.dconv.weight.grad is not None and m.dconv.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------------ shapes


@pytest.mark.parametrize("size", [(2, 2), (3, 5), (4, 4), (7, 9), (14, 14), (2, 11)])
def test_output_shape(size):
    H, W = size
    m = DeformableTokenMerging(4, 8).eval()
    with torch.no_grad():
        out = m(torch.randn(3, H, W, 4))
    assert out.shape == (3, H // 2, W // 2, 8)


# ------------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("size", [(1, 5), (5, 1), (1, 1)])
def test_too_small_map(size):
    m = DeformableTokenMerging(4, 8)
    with pytest.raises(ValueError, match=rf"at least 2x2.*got {size[0]}x{size[1]}"):
        m(torch.randn(1, *size, 4))


def test_wrong_channels():
    m = DeformableTokenMerging(4, 8)
    with pytest.raises(ValueError, match=r"DeformableTokenMerging input.*4 channels.*\[1, 4, 4, 3\]"):
        m(torch.randn(1, 4, 4, 3))


@pytest.mark.parametrize("shape", [(16, 4), (1, 16, 4), (1, 2, 4, 4, 4)])
def test_wrong_rank(shape):
    m = DeformableTokenMerging(4, 8)
    with pytest.raises(ValueError, match=rf"DeformableTokenMerging input.*{len(shape)}-D"):
        m(torch.randn(*shape))


def test_integer_dtype():
    m = DeformableTokenMerging(4, 8)
    with pytest.raises(TypeError, match=r"DeformableTokenMerging input.*floating.*int64"):
        m(torch.zeros(1, 4, 4, 4, dtype=torch.int64))


@pytest.mark.parametrize(
    "kwargs,shown", [({"in_dim": 0, "out_dim": 8}, "in_dim.*0"), ({"in_dim": 4, "out_dim": 2.5}, "out_dim.*2.5")]
)
def test_bad_constructor_args(kwargs, shown):
    with pytest.raises(ValueError, match=shown):
        DeformableTokenMerging(**kwargs)
