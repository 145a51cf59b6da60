"""The dense builders: names, the official structures (parameter totals of spec DENSE.md), the calling convention
(types, shapes, 0-based labels, losses and backward, batches of different sizes, non-square inputs)."""

import pytest
import torch

from litvit.dense import create_dense_model, list_dense_models
from litvit.errors import ConfigError, DataError

TINY = dict(embed_dim=8, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8))
TINY_DET = dict(backbone_kwargs=TINY, fpn_channels=16, min_size=None)
RCNN_TINY = dict(box_fc_channels=32, mask_channels=8, rpn_post_nms_top_n_test=100, rpn_pre_nms_top_n_test=200)
NUM_CLASSES = 3

# (name, parameters, state_dict entries): spec DENSE.md 1.1 / 1.2 / 4, recomputed from the official modules.
# torchvision's R-CNN predictors hold a background slot the official ones do not: 4 box-regressor rows (4 x 1024
# weights + 4 biases) and 1 mask-logit channel (256 + 1) more than the official 47,350,056 etc.
RCNN_BACKGROUND_SLOT = 4 * 1024 + 4 + 256 + 1
OFFICIAL_TOTALS = [
    ("retinanet_litv2_s", 38_014_252, 257),
    ("retinanet_litv2_m", 59_000_620, None),
    ("retinanet_litv2_b", 97_139_852, None),
    ("mask_rcnn_litv2_s", 47_350_056 + RCNN_BACKGROUND_SLOT, 263),
    ("mask_rcnn_litv2_b", 105_894_024 + RCNN_BACKGROUND_SLOT, None),
    ("semantic_fpn_litv2_s", 31_449_486, 283),
    ("semantic_fpn_litv2_b", 89_993_518, None),
    ("retinanet_lit_ti", 29_621_708, None),
    ("retinanet_lit_s", 38_904_292, None),
    ("mask_rcnn_lit_ti", 39_539_144 + RCNN_BACKGROUND_SLOT, None),
    ("mask_rcnn_lit_s", 48_240_096 + RCNN_BACKGROUND_SLOT, None),
    ("semantic_fpn_lit_ti", 23_638_382, None),
    ("semantic_fpn_lit_s", 31_850_502, None),
]


@pytest.mark.parametrize("name, params, entries", OFFICIAL_TOTALS)
def test_official_structures(name, params, entries):
    with torch.device("meta"):
        model = create_dense_model(name)
    assert sum(p.numel() for p in model.parameters()) == params
    if entries is not None:
        assert len(model.state_dict()) == entries
    assert model.backbone.out_channels == 256


def test_names():
    names = list_dense_models()
    for arch in ("retinanet", "mask_rcnn", "faster_rcnn", "semantic_fpn"):
        for backbone in ("litv2_s", "litv2_m", "litv2_b", "lit_ti", "lit_s"):
            assert f"{arch}_{backbone}" in names
    assert "mask_rcnn_litv2_b_ws4" in names and "retinanet_litv2_s_ws4" in names
    assert "semantic_fpn_litv2_s_ws4" not in names  # no released segmenter has window 4


def test_ws4_sets_the_stage3_window():
    with torch.device("meta"):
        model = create_dense_model("retinanet_litv2_m_ws4")
    assert model.backbone.body.layers[2].blocks[0].attn.window_size == 4


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("retinanet_resnet50", {}, "unknown dense model"),
        ("semantic_fpn_litv2_s_ws4", {}, "unknown dense model"),
        ("retinanet_litv2_s", {"topk_rule": "best", "backbone_kwargs": TINY}, "topk_rule"),
        ("retinanet_litv2_s", {"num_classes": 0}, "num_classes"),
        ("mask_rcnn_litv2_s", {"mask_paste": "nearest", "backbone_kwargs": TINY}, "mask_paste"),
        ("mask_rcnn_litv2_s", {"backbone_kwargs": {"depths": (1, 1)}}, "cannot build"),
        ("semantic_fpn_litv2_s", {"aux_weight": -0.4, "backbone_kwargs": TINY}, "aux_weight must be a number >= 0"),
        ("semantic_fpn_litv2_s", {"aux_weight": "0.4", "backbone_kwargs": TINY}, "aux_weight must be a number >= 0"),
        ("semantic_fpn_litv2_s", {"aux_weight": float("nan"), "backbone_kwargs": TINY}, "aux_weight"),
    ],
)
def test_bad_arguments_are_one_line(name, kwargs, match):
    with pytest.raises(ConfigError, match=match) as err:
        create_dense_model(name, **kwargs)
    assert "\n" not in str(err.value)


def tiny(name: str, **kwargs) -> torch.nn.Module:
    extra = RCNN_TINY if "rcnn" in name else {}
    return confident(create_dense_model(name, NUM_CLASSES, **{**TINY_DET, **extra, **kwargs}))


def confident(model: torch.nn.Module) -> torch.nn.Module:
    """A freshly initialised RetinaNet scores every anchor ~0.01 (prior bias), under the 0.05 threshold: raise it."""
    if hasattr(model, "head"):
        torch.nn.init.zeros_(model.head.classification_head.cls_logits.bias)
    return model


def images():
    g = torch.Generator().manual_seed(0)
    return [torch.rand(3, 96, 128, generator=g), torch.rand(3, 70, 52, generator=g)]  # different, non-square


def targets(with_masks: bool):
    out = []
    for (h, w), boxes, labels in [
        ((96, 128), [[10.0, 12.0, 60.0, 70.0], [50.0, 5.0, 120.0, 40.0]], [0, NUM_CLASSES - 1]),
        ((70, 52), [[4.0, 6.0, 40.0, 60.0]], [1]),
    ]:
        t = {"boxes": torch.tensor(boxes), "labels": torch.tensor(labels)}
        if with_masks:
            masks = torch.zeros(len(boxes), h, w, dtype=torch.uint8)
            for m, (x1, y1, x2, y2) in zip(masks, boxes):
                m[int(y1) : int(y2), int(x1) : int(x2)] = 1
            t["masks"] = masks
        out.append(t)
    return out


@pytest.mark.parametrize("name", ["retinanet_litv2_s", "mask_rcnn_litv2_s", "faster_rcnn_lit_ti"])
def test_detector_outputs(name):
    torch.manual_seed(0)
    kwargs = {"backbone_kwargs": dict(embed_dims=(8, 16, 40, 64), depths=(1, 1, 2, 1))} if "lit_ti" in name else {}
    model = tiny(name, **kwargs).eval()
    imgs = images()
    with torch.no_grad():
        outs = model(imgs)
    assert isinstance(outs, list) and len(outs) == 2
    for out, img in zip(outs, imgs):
        n = out["boxes"].shape[0]
        assert 0 < n <= 100
        assert out["boxes"].shape == (n, 4) and out["scores"].shape == (n,) and out["labels"].shape == (n,)
        assert out["labels"].dtype == torch.int64
        assert out["labels"].min() >= 0 and out["labels"].max() < NUM_CLASSES
        assert (out["scores"] > 0.05).all() and (out["scores"][:-1] >= out["scores"][1:]).all()
        h, w = img.shape[-2:]
        b = out["boxes"]
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 1] >= 0).all() and (b[:, 3] <= h).all()
        if "mask" in name:
            assert out["masks"].shape == (n, 1, h, w)
            assert out["masks"].min() >= 0 and out["masks"].max() <= 1


@pytest.mark.parametrize("name", ["retinanet_litv2_s", "mask_rcnn_litv2_s"])
def test_detector_trains(name):
    torch.manual_seed(0)
    model = tiny(name).train()
    losses = model(images(), targets(with_masks="mask" in name))
    assert isinstance(losses, dict) and len(losses) >= 2
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.backbone.body.patch_embed.proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["faster_rcnn_litv2_s", "retinanet_litv2_s"])
@pytest.mark.parametrize("label", [NUM_CLASSES, -1])
def test_labels_are_zero_based_in_training(name, label):
    """Labels 0..K-1 train (K-1 included, targets() uses it); K (torchvision's 1-based last class) or -1 is a
    one-line DataError at the model's boundary."""
    torch.manual_seed(0)
    model = tiny(name).train()
    bad = targets(with_masks=False)
    bad[1]["labels"] = torch.tensor([label])
    with pytest.raises(DataError, match=f"target 1 has label {label}: labels are 0-based") as err:
        model(images(), bad)
    assert "\n" not in str(err.value)


def _bad_images():
    good = images()[0]
    return [
        (
            lambda: [good.permute(1, 2, 0)],
            ValueError,
            r"image 0 must be a \(3, H, W\) tensor, got shape \[96, 128, 3\]; "
            r"it looks channels-last: use image.permute\(2, 0, 1\)",
        ),
        (lambda: [(good * 255).byte()], TypeError, r"image 0 has dtype torch.uint8: detectors take float images"),
        (lambda: [good, good[:, :0]], ValueError, "image 1 is 128x0 pixels"),
        (lambda: [good.numpy()], TypeError, "image 0 is a ndarray, not a tensor"),
        (lambda: None, TypeError, "images must be a list of"),
    ]


def _bad_targets():
    def edit(i, **entries):
        out = targets(with_masks=False)
        out[i] = {**out[i], **entries}
        return out

    return [
        (
            edit(1, boxes=torch.tensor([[4.0, 6.0, 40.0, 60.0]]), labels=torch.tensor([1, 2])),
            "target 1 has boxes of "
            r"shape \[1, 4\] and labels of shape \[2\]",
        ),
        (edit(0, labels=torch.tensor([0.0, 1.0])), "target 0 has torch.float32 labels"),
        (edit(1, boxes=torch.tensor([[4.0, 6.0, float("nan"), 60.0]])), "target 1 has a box that is NaN or infinite"),
        (edit(1, boxes=torch.tensor([[4.0, 6.0, 3.0, 60.0]])), r"x2 <= x1 or y2 <= y1: boxes are \[x1, y1, x2, y2\]"),
        (targets(with_masks=False)[:1], "2 images but 1 targets"),
        (None, r"a training step needs targets, model\(images, targets\)"),
    ]


@pytest.mark.parametrize("name", ["faster_rcnn_litv2_s", "retinanet_litv2_s"])
def test_bad_detector_input_is_one_line_at_the_boundary(name):
    """What torchvision's transform and heads fail on deep inside (a ZeroDivisionError, a broadcast error, an
    IndexError), or train on silently (boxes without their labels), is one line naming the fix; no images give no
    detections."""
    model = tiny(name).eval()
    for make, kind, match in _bad_images():
        with pytest.raises(kind, match=match) as err:
            model(make())
        assert "\n" not in str(err.value)
    assert model([]) == [] and len(model(torch.stack([images()[0]] * 2))) == 2  # a (B, 3, H, W) batch is B images
    model.train()
    for bad, match in _bad_targets():
        with pytest.raises(DataError, match=match):
            model(images(), bad)
    with pytest.raises(DataError, match="a training step needs at least one image"):
        model([], [])


def test_detector_resizes_by_default_and_maps_back():
    torch.manual_seed(0)
    model = tiny("retinanet_litv2_s", min_size=64, max_size=100).eval()
    img = torch.rand(3, 150, 200)
    with torch.no_grad():
        images_list, _ = model.transform([img])
        (out,) = model([img])
    assert tuple(images_list.image_sizes[0]) == (64, 85)  # short side 64 (torchvision's rule), long side <= 100
    assert out["boxes"][:, 2].max() <= 200 + 1e-3 and out["boxes"][:, 3].max() <= 150 + 1e-3  # given image pixels


@pytest.mark.parametrize("size", [(64, 64), (90, 122), (61, 47)])
def test_semantic_fpn_shapes(size):
    torch.manual_seed(0)
    model = create_dense_model("semantic_fpn_litv2_s", 5, backbone_kwargs=TINY, fpn_channels=16, channels=8).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        logits, quarter = model(x), model.decode(x)
    assert logits.shape == (2, 5, *size)
    assert quarter.shape == (2, 5, -(-size[0] // 4), -(-size[1] // 4))
    expected = torch.nn.functional.interpolate(quarter, size=size, mode="bilinear", align_corners=False)
    torch.testing.assert_close(logits, expected)
    assert model.out_channels == model.backbone.out_channels == 16


def test_semantic_fpn_trains():
    torch.manual_seed(0)
    model = create_dense_model("semantic_fpn_lit_s", 4, backbone_kwargs=TINY, fpn_channels=16, channels=8).train()
    x = torch.randn(2, 3, 64, 96)
    labels = torch.randint(0, 4, (2, 64, 96))
    loss = torch.nn.functional.cross_entropy(model(x), labels)
    loss.backward()
    assert torch.isfinite(loss) and model.decode_head.conv_seg.weight.grad.abs().sum() > 0


def test_semantic_fpn_auxiliary_head_in_training_only():
    """aux_weight > 0: training returns {"out", "aux"} (the auxiliary logits at stride 16, from the FPN's stride-16
    level); evaluation returns the logits alone, as without it; aux_weight 0 (the official model) has no such head."""
    torch.manual_seed(0)
    kwargs = dict(backbone_kwargs=TINY, fpn_channels=16, channels=8)
    model = create_dense_model("semantic_fpn_litv2_s", 5, aux_weight=0.4, **kwargs)
    plain = create_dense_model("semantic_fpn_litv2_s", 5, **kwargs)
    assert not any(k.startswith("aux_head.") for k in plain.state_dict())
    extra = set(model.state_dict()) - set(plain.state_dict())
    assert extra and all(k.startswith("aux_head.") for k in extra)
    x = torch.randn(2, 3, 96, 64)
    out = model.train()(x)
    assert out["out"].shape == (2, 5, 96, 64) and out["aux"].shape == (2, 5, 6, 4)
    out["aux"].sum().backward()  # the auxiliary loss reaches the backbone
    assert model.aux_head[0][0].weight.grad.abs().sum() > 0
    assert model.backbone.body.patch_embed.proj.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        logits = model(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 5, 96, 64)
    expected = torch.nn.functional.interpolate(model.decode(x), size=(96, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(logits, expected)


def test_pretrained_backbone_loads_the_backbone_alone(tmp_path):
    """`pretrained_backbone`: an official backbone file (here the LITv2 detection-backbone fixture, official keys)
    fills `backbone.body`; the FPN and heads keep their initialisation."""
    from pathlib import Path

    fixture = torch.load(Path(__file__).parents[1] / "data" / "official" / "litv2_det_tiny.pt", weights_only=True)
    path = tmp_path / "backbone.pth"
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in fixture["state_dict"].items()}}, path)
    config = {k: v for k, v in fixture["config"].items() if k != "drop_path_rate"}
    model = create_dense_model("retinanet_litv2_s", 2, pretrained_backbone=str(path), backbone_kwargs=config)
    body = model.backbone.body.state_dict()
    assert set(body) == set(fixture["state_dict"])
    assert all(torch.equal(body[k], v) for k, v in fixture["state_dict"].items())
