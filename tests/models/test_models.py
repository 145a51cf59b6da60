"""Model behaviour: any input size, constructor keywords, training gradients, the timm API and clear errors."""

import pytest
import timm
import torch
import torch.nn.functional as F

import litvit  # noqa: F401
from litvit.models import LIT, LITBackbone, LITTi, LITTiBackbone, LITv2, LITv2Backbone

TINY = dict(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8))
TINY_TI = dict(embed_dims=(16, 32, 40, 64), num_heads=(1, 2, 5, 8), mlp_ratios=(8, 8, 4, 4), depths=(1, 1, 2, 1))


def tiny(kind: str, **kwargs):
    if kind == "litv2":
        return LITv2(img_size=64, num_classes=10, **TINY, **kwargs)
    if kind == "lit":
        return LIT(img_size=64, num_classes=10, **TINY, **kwargs)
    return LITTi(img_size=64, num_classes=10, **TINY_TI, **kwargs)


KINDS = ["litv2", "lit", "lit_ti"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [(64, 64), (29, 29), (65, 97), (100, 36), (33, 130)])
def test_any_input_size(kind, size):
    model = tiny(kind).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        out = model(x)
        single = model(x[1:])
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1:], single, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [(64, 64), (80, 48)])
def test_position_tables_take_part(kind, size):
    """At the native size and at a resized one, the stored position tables reach the output (LITv2 has none)."""
    model = tiny(kind).eval()
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        ref = model(x)
        for name, p in model.named_parameters():
            if "relative_position_bias_table" in name or name.startswith("pos_embed"):
                p.add_(torch.randn_like(p))
        moved = model(x)
    if kind == "litv2":
        torch.testing.assert_close(ref, moved)  # LITv2 has no position tables at all
    else:
        assert not torch.allclose(ref, moved)


@pytest.mark.parametrize("kind", KINDS)
def test_too_small_image_is_refused(kind):
    model = tiny(kind).eval()
    with pytest.raises(ValueError, match=r"too small.*at least 29"):
        model(torch.randn(1, 3, 28, 64))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("x", "exc", "match"),
    [
        (torch.randn(3, 64, 64), ValueError, r"image batch \(B, 3, H, W\).*unsqueeze"),
        (torch.randn(1, 1, 3, 64, 64), ValueError, r"image batch"),
        (torch.randn(1, 4, 64, 64), ValueError, r"3 channels.*\[1, 4, 64, 64\]"),
        (torch.randn(1, 64, 64, 3), ValueError, r"channels-last.*permute"),
        (torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8), TypeError, r"floating-point.*uint8"),
    ],
)
def test_bad_input_is_refused_clearly(kind, x, exc, match):
    model = tiny(kind).eval()
    with pytest.raises(exc, match=match):
        model(x)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(alpha=1.5), r"alpha must be a number in \[0, 1\].*1\.5"),
        (dict(alpha=-0.1), r"alpha.*-0\.1"),
        (dict(local_ws=(0, 0, 0, 1)), r"local_ws\[2\].*>= 1.*0"),
        (dict(local_ws=(0, 0, 2)), r"local_ws needs one window per stage \(4 stages\).*\(0, 0, 2\)"),
        (dict(num_heads=(1, 2, 4, 7)), r"dim \(128\) must be divisible by num_heads \(7\)"),
        (dict(num_classes=-1), r"num_classes.*-1"),
        (dict(drop_path_rate=1.5), r"drop_path_rate.*1\.5"),
        (dict(global_pool="max"), r"global_pool.*'max'"),
        (dict(depths=(1, 0, 2, 1)), r"depths.*>= 1.*0"),
        (dict(img_size=(64, 64, 3)), r"img_size.*\(64, 64, 3\)"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    args = dict(TINY, img_size=64, num_classes=10)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        LITv2(**args)


# Per-stage arguments given as an int, or with the wrong length, for every family and through timm: one line that
# names the argument and shows what it needs (before: `TypeError: object of type 'int' has no len()`).
PER_STAGE_CASES = [
    ("litv2_s", dict(local_ws=0), r"^local_ws needs one window per stage \(4 stages\), e\.g\. \(0, 0, 2, 1\); got 0$"),
    ("litv2_s", dict(has_msa=1), r"^has_msa needs one flag .* per stage \(4 stages\), e\.g\. \(0, 0, 1, 1\); got 1$"),
    ("litv2_s", dict(has_msa=(0, 1, 1)), r"^has_msa needs one flag .*\(4 stages\).*got \(0, 1, 1\)$"),
    ("litv2_s", dict(depths=2), r"^depths needs one block count per stage, e\.g\. \(2, 2, 6, 2\); got 2$"),
    ("litv2_s", dict(num_heads=3), r"^num_heads needs one head count per stage \(4 stages\).*got 3$"),
    ("litv2_s", dict(depths=(2, 2, 6)), r"^num_heads needs one head count per stage \(3 stages\); got"),
    ("litv2_s", dict(depths=()), r"^depths needs one block count per stage.*got \(\)$"),
    ("lit_s", dict(has_msa=0), r"^has_msa needs one flag .*\(4 stages\).*got 0$"),
    ("lit_s", dict(depths=2), r"^depths needs one block count per stage.*got 2$"),
    ("lit_s", dict(num_heads=(3, 6)), r"^num_heads needs one head count per stage \(4 stages\).*got \(3, 6\)$"),
    ("lit_ti", dict(has_msa=1), r"^has_msa needs one flag .*\(4 stages\).*got 1$"),
    ("lit_ti", dict(depths=3), r"^depths needs one block count per stage \(4 stages\), e\.g\. \(3, 4, 6, 3\); got 3$"),
    ("lit_ti", dict(num_heads=(1, 2, 5)), r"^num_heads needs one head count per stage.*got \(1, 2, 5\)$"),
    ("lit_ti", dict(embed_dims=64), r"^embed_dims needs one channel count per stage.*got 64$"),
    ("lit_ti", dict(mlp_ratios=4), r"^mlp_ratios needs one FFN ratio per stage.*got 4$"),
]


@pytest.mark.parametrize(("name", "kwargs", "match"), PER_STAGE_CASES)
def test_per_stage_arguments_are_checked(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        timm.create_model(name, **kwargs)


@pytest.mark.parametrize(
    "build",
    [
        lambda: LITv2Backbone(task="seg", local_ws=1),
        lambda: LITBackbone(task="det", has_msa=1),
        lambda: LITTiBackbone(depths=3),
    ],
)
def test_per_stage_arguments_are_checked_in_backbones(build):
    with pytest.raises(ValueError, match=r"needs one .* per stage"):
        build()


def test_per_stage_arguments_accept_lists_and_tuples():
    a = LITv2(**dict(TINY, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8]), local_ws=[0, 0, 2, 1], has_msa=[0, 0, 1, 1])
    b = LITv2(**TINY)
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}


def test_constructor_keywords_take_effect():
    model = timm.create_model("litv2_s", alpha=0.5, local_ws=(0, 0, 4, 1), num_classes=37, drop_path_rate=0.1)
    hilo = model.layers[2].blocks[0].attn
    assert (hilo.l_heads, hilo.h_heads, hilo.window_size) == (6, 6, 4)
    assert model.head.out_features == 37
    assert model.layers[3].blocks[1].drop_path.drop_prob == pytest.approx(0.1)
    assert model.layers[0].blocks[0].drop_path.__class__.__name__ == "Identity"  # rate exactly 0 -> Identity
    m384 = timm.create_model("litv2_b", img_size=384, pretrained=False)
    assert m384.img_size == (384, 384)
    lit = timm.create_model("lit_s", img_size=256)
    assert lit.layers[2].blocks[0].attn.relative_position_bias_table.shape == (31 * 31, 12)


@pytest.mark.parametrize("kind", KINDS)
def test_training_step_reaches_every_parameter(kind):
    model = tiny(kind).train()
    # Non-zero offsets and a rectangular input exercise the whole deformable path and the resize paths.
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "conv_offset"):
                m.conv_offset.bias.uniform_(-0.7, 0.7)
    x = torch.randn(3, 3, 72, 88)
    loss = F.cross_entropy(model(x), torch.tensor([1, 2, 3]))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.head.weight.detach().clone()
    opt.step()
    assert not torch.equal(before, model.head.weight)


@pytest.mark.parametrize(
    "backbone",
    [
        lambda: LITv2Backbone(task="det", **TINY),
        lambda: LITv2Backbone(task="seg", **TINY),
        lambda: LITBackbone(task="det", **TINY),
        lambda: LITBackbone(task="seg", **TINY),
        lambda: LITTiBackbone(img_size=64, **TINY_TI),
    ],
)
@pytest.mark.parametrize("size", [(64, 64), (90, 122), (37, 45)])
def test_dense_backbones_any_size(backbone, size):
    model = backbone().eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    assert len(outs) == 4
    h, w = -(-size[0] // 4), -(-size[1] // 4)
    for i, out in enumerate(outs):
        assert out.shape[2:] == (h, w), i
        assert out.is_contiguous()
        h, w = h // 2, w // 2


def test_backbone_output_norms():
    det, seg = LITv2Backbone(task="det", **TINY), LITv2Backbone(task="seg", **TINY)
    assert not any(k.startswith("norm0") for k in det.state_dict())
    assert any(k.startswith("norm0") for k in seg.state_dict())
    assert det.train() is det and det.eval() is det  # the official backbones' train() returned None
    with pytest.raises(ValueError, match=r"task must be 'det'.*'cls'"):
        LITv2Backbone(task="cls", **TINY)


@pytest.mark.parametrize("kind", KINDS)
def test_timm_api(kind):
    model = tiny(kind).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        logits = model(x)
        feats = model.forward_features(x)
        pre = model.forward_head(feats, pre_logits=True)
        torch.testing.assert_close(model.forward_head(feats), logits)
        assert pre.shape == (2, model.num_features)
        final, inter = model.forward_intermediates(x)
        torch.testing.assert_close(final, feats)
        assert [t.shape[1] for t in inter] == [f["num_chs"] for f in model.feature_info]
        assert [t.shape[2:] for t in inter] == [(16, 24), (8, 12), (4, 6), (2, 3)]
        model.set_grad_checkpointing(True)
        torch.testing.assert_close(model(x), logits)
    model.reset_classifier(37)
    assert model.get_classifier().out_features == 37
    assert model(x).shape == (2, 37)


@pytest.mark.parametrize("name", ["litv2_s", "lit_s", "lit_ti"])
def test_timm_create_model_features_only(name):
    model = timm.create_model(name, features_only=True, out_indices=(1, 3)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 96, 128))
    assert [o.shape[2:] for o in outs] == [(12, 16), (3, 4)]
    assert model.feature_info.channels() == [o.shape[1] for o in outs]


@pytest.mark.parametrize("kind", KINDS)
def test_bf16_autocast_and_pure_bf16(kind):
    """bf16 runs end to end on CPU (torchvision's deformable conv has no bf16 CPU kernel: it runs in fp32 there)."""
    model = tiny(kind).eval()
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = model(x)
        pure = model.to(torch.bfloat16)(x.bfloat16())
    assert auto.dtype == pure.dtype == torch.bfloat16
    for out in (auto, pure):
        assert (out.float() - ref).norm() / ref.norm() < 3e-2
