"""DTM's fp32 inference path (`deform_conv2x2_s2_gather`): torchvision's sampled columns bit for bit, taken only in
eager fp32 CPU inference; traced graphs keep torchvision's op (ONNX DeformConv)."""

import pytest
import torch
from torch.profiler import profile
from torchvision.ops import deform_conv2d

from litvit.layers import DeformableTokenMerging
from litvit.layers.dtm import deform_conv2x2_s2_gather


def reference(x, offset, weight, bias):
    return deform_conv2d(x.permute(0, 3, 1, 2), offset, weight, bias, stride=2).permute(0, 2, 3, 1)


def one_hot_weight(c):
    """Output channel 4c + t is input channel c at tap t: the conv's output is its sampled columns, exactly."""
    weight = torch.zeros(4 * c, c, 2, 2)
    for ch in range(c):
        for t in range(4):
            weight[4 * ch + t, ch, t // 2, t % 2] = 1.0
    return weight, torch.zeros(4 * c)


def offsets(h, w, scale, seed=0):
    g = torch.Generator().manual_seed(seed)
    off = torch.randn(3, 8, h // 2, w // 2, generator=g) * scale
    off[0, 0, 0, 0], off[0, 1, 0, 0] = -1.0, -0.5  # exactly on the lower bound (-1: zero, as in torchvision)
    off[1, 2, 0, 0] = float(h - 1)  # tap (0, 1) of output (0, 0) lands exactly on row h: outside
    off[2, 5, 0, 0] = 0.0  # an integer position: two corner weights exactly 0
    return off


@pytest.mark.parametrize(("h", "w", "scale"), [(8, 8, 1.5), (11, 13, 3.0), (2, 2, 0.7), (5, 2, 40.0)])
def test_columns_are_torchvisions_bit_for_bit(h, w, scale):
    x = torch.randn(3, h, w, 5)
    weight, bias = one_hot_weight(5)
    off = offsets(h, w, scale)
    assert torch.equal(deform_conv2x2_s2_gather(x, off, weight, bias), reference(x, off, weight, bias))


def test_non_finite_pixels_and_offsets_as_torchvision():
    """A NaN in the odd last row (which only offsets reach) spreads to the samples that read it, not to samples
    outside the map; a sample with a non-finite offset is NaN (`poison`), in its image only."""
    x = torch.randn(3, 7, 9, 4)
    x[0, 6, 3] = float("nan")
    weight, bias = one_hot_weight(4)
    off = offsets(7, 9, 2.0)
    off[0, :, 2, :] = 1.5  # output row 2 of image 0 samples rows 5.5 and 6.5: around the NaN row
    off[0, :, 1, :] = 5.0  # output row 1 samples rows 7 and 8: outside the map, 0 (no pixel read)
    off[2, 3, 1, 1] = float("inf")
    got, want = deform_conv2x2_s2_gather(x, off, weight, bias), reference(x, off, weight, bias)
    want = want.masked_fill(torch.tensor([False, False, True]).view(3, 1, 1, 1), float("nan"))
    assert torch.equal(got.isnan(), want.isnan()) and got.isnan()[0].any() and not got.isnan()[1].any()
    assert torch.equal(got.nan_to_num(), want.nan_to_num())


def test_dtm_fp32_inference_takes_the_gather_path():
    torch.manual_seed(0)
    dtm = DeformableTokenMerging(6, 10).eval()
    torch.nn.init.normal_(dtm.dconv.conv_offset.weight, std=0.3)  # non-zero offsets
    x = torch.randn(2, 9, 12, 6)
    with torch.no_grad(), profile() as prof:
        out = dtm(x)
    keys = {e.key for e in prof.key_averages()}
    assert "aten::index_select" in keys and not any("deform_conv2d" in k for k in keys)
    with torch.enable_grad():
        plain = dtm(x)  # grad enabled in eval: torchvision's kernel, which has a backward
    torch.testing.assert_close(out, plain.detach(), atol=1e-6, rtol=1e-6)


def test_traced_graphs_keep_torchvisions_op():
    dtm = DeformableTokenMerging(6, 10).eval()
    targets = []

    def backend(gm, example_inputs):
        targets.extend(str(n.target) for n in gm.graph.nodes)
        return gm.forward

    with torch.no_grad():
        torch.compile(dtm, backend=backend, fullgraph=True)(torch.randn(1, 8, 8, 6))
    assert any("deform_conv2d" in t for t in targets) and not any("index_select" in t for t in targets)
