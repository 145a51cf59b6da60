"""The sampled 2x2 deformable-conv path (bf16 / fp16 / autocast, or opt-in fp32) against torchvision's kernel."""

import pytest
import torch
from torchvision.ops import deform_conv2d

from litvit.layers import DeformableTokenMerging
from litvit.layers.dtm import deform_conv2x2_s2_nhwc


def case(h, w, c=8, c_out=12, scale=1.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, h, w, c, generator=g)
    offset = torch.randn(2, 8, h // 2, w // 2, generator=g) * scale  # fractional, some samples off the map
    weight = torch.randn(c_out, c, 2, 2, generator=g) * 0.2
    bias = torch.randn(c_out, generator=g)
    return x, offset, weight, bias


def reference(x, offset, weight, bias):
    return deform_conv2d(x.permute(0, 3, 1, 2), offset, weight, bias, stride=2).permute(0, 2, 3, 1)


@pytest.mark.parametrize(("h", "w"), [(8, 8), (7, 9), (2, 2), (2, 5), (13, 4)])
def test_sampled_path_equals_torchvision_fp32(h, w):
    x, offset, weight, bias = case(h, w)
    out = deform_conv2x2_s2_nhwc(x, offset, weight, bias)
    assert out.shape == (2, h // 2, w // 2, 12)
    torch.testing.assert_close(out, reference(x, offset, weight, bias), atol=1e-5, rtol=1e-5)


def test_sampled_path_gradients_equal_torchvision():
    x, offset, weight, bias = case(9, 7)
    leaves = [t.clone().requires_grad_() for t in (x, offset, weight, bias)]
    (reference(*leaves) ** 2).sum().backward()
    expected = [t.grad.clone() for t in leaves]
    leaves = [t.clone().requires_grad_() for t in (x, offset, weight, bias)]
    (deform_conv2x2_s2_nhwc(*leaves) ** 2).sum().backward()
    for got, want in zip([t.grad for t in leaves], expected):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_bf16_and_autocast_use_the_sampled_path_and_stay_close():
    torch.manual_seed(0)
    dtm = DeformableTokenMerging(16, 32).eval()
    with torch.no_grad():
        dtm.dconv.conv_offset.bias.uniform_(-1.5, 1.5)
        dtm.dconv.conv_offset.weight.normal_(0, 0.05)
    x = torch.randn(2, 10, 14, 16)
    with torch.no_grad():
        ref = dtm(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = dtm(x)
        pure = dtm.to(torch.bfloat16)(x.bfloat16())
    assert pure.dtype == torch.bfloat16
    for out in (auto, pure):
        assert (out.float() - ref).norm() / ref.norm() < 2e-2


def test_sampled_fp32_switch():
    torch.manual_seed(0)
    dtm = DeformableTokenMerging(8, 16).eval()
    with torch.no_grad():
        dtm.dconv.conv_offset.bias.uniform_(-1.5, 1.5)
    x = torch.randn(2, 9, 11, 8)
    with torch.no_grad():
        exact = dtm(x)
        dtm.dconv.sampled_fp32 = True
        sampled = dtm(x)
    assert not torch.equal(exact, sampled)  # another arithmetic ...
    torch.testing.assert_close(sampled, exact, atol=1e-5, rtol=1e-5)  # ... with the same result to rounding
