"""Parameter counts, buffer sizes and FLOPs equal the official code's (spec/ARCHITECTURE.md section 6)."""

import pytest
import timm
import torch

import litvit  # noqa: F401
from litvit.flops import count_macs, official_flops
from litvit.models import create_backbone

PARAMS = {
    "litv2_s": 27_844_000,
    "litv2_m": 48_830_368,
    "litv2_b": 86_520_704,
    "lit_s": 27_973_720,
    "lit_m": 49_372_264,
    "lit_b": 87_292_384,
    "lit_ti": 19_886_272,
}
BUFFERS = {
    "litv2_s": 2_691,
    "litv2_m": 2_691,
    "litv2_b": 3_587,
    "lit_s": 237_989,
    "lit_m": 698_981,
    "lit_b": 699_877,
    "lit_ti": 1_923,
}
OFFICIAL_FLOPS = {
    ("litv2_s", 224): 3_734_401_596,
    ("litv2_m", 224): 7_479_237_180,
    ("litv2_b", 224): 13_193_561_148,
    ("litv2_b", 384): 39_709_486_528,
    ("lit_s", 224): 4_081_669_692,
    ("lit_m", 224): 8_599_316_028,
    ("lit_b", 224): 15_036_676_156,
}
DENSE_PARAMS = {
    ("litv2_s", "det"): 27_076_152,
    ("litv2_m", "det"): 48_062_520,
    ("litv2_b", "det"): 85_497_240,
    ("litv2_s", "seg"): 27_076_344,
    ("litv2_m", "seg"): 48_062_712,
    ("litv2_b", "seg"): 85_497_496,
    ("lit_s", "det"): 27_966_192,
    ("lit_s", "seg"): 27_477_360,
    ("lit_ti", "det"): 19_371_736,
    ("lit_ti", "seg"): 19_371_736,
}


def meta_model(name: str, **kwargs):
    with torch.device("meta"):
        return timm.create_model(name, **kwargs)


@pytest.mark.parametrize("name", list(PARAMS))
def test_parameter_and_buffer_counts(name):
    model = meta_model(name)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == PARAMS[name]
    assert sum(b.numel() for _, b in model.named_buffers()) == BUFFERS[name]


@pytest.mark.parametrize(("name", "task"), list(DENSE_PARAMS))
def test_dense_backbone_parameter_counts(name, task):
    with torch.device("meta"):
        model = create_backbone(name, task=task)
    assert sum(p.numel() for p in model.parameters()) == DENSE_PARAMS[(name, task)]


@pytest.mark.parametrize(("name", "size"), list(OFFICIAL_FLOPS))
def test_official_flops_exact(name, size):
    model = meta_model(name, img_size=size)
    assert official_flops(model) == OFFICIAL_FLOPS[(name, size)]
    assert model.flops() == OFFICIAL_FLOPS[(name, size)]


@pytest.mark.parametrize(
    ("alpha", "gflops"), [(0.0, 3.965), (0.2, 3.881), (0.4, 3.815), (0.5, 3.769), (0.7, 3.742), (1.0, 3.746)]
)
def test_alpha_ablation_flops(alpha, gflops):
    assert round(official_flops(meta_model("litv2_s", alpha=alpha)) / 1e9, 3) == gflops


def test_official_flops_refuses_lit_ti():
    with pytest.raises(TypeError, match="count_macs"):
        official_flops(meta_model("lit_ti"))


@pytest.mark.parametrize(("name", "gmacs"), [("lit_ti", 3.614), ("lit_s", 4.077), ("litv2_s", 3.724)])
def test_measured_macs_match_official_flop_counter(name, gmacs):
    """FlopCounterMode totals, with our deform_conv2d formula, match the official code measured the same way."""
    assert round(count_macs(timm.create_model(name)) / 1e9, 3) == gmacs


def test_deform_conv_is_counted():
    """Without the registered formula FlopCounterMode would count DTM's deformable conv as zero."""
    from litvit.layers import DeformableTokenMerging

    dtm = DeformableTokenMerging(8, 16)

    class Wrap(torch.nn.Module):
        def forward(self, x):
            return dtm(x.permute(0, 2, 3, 1))

    macs = count_macs(Wrap(), input_size=(6, 10), in_chans=8)
    offset_conv = 8 * 4 * 8 * 3 * 5
    deform = 16 * 4 * 8 * 3 * 5
    assert macs >= offset_conv + deform
