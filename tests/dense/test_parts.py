"""The mmdet rules litvit puts into torchvision's detectors, each against its definition (spec DENSE.md section 5)."""

import math

import pytest
import torch
from torchvision.models.detection.image_list import ImageList

from litvit.dense import create_dense_model
from litvit.dense.anchors import WH_RATIO_CLIP, MMDetAnchorGenerator, MMDetBoxCoder
from litvit.dense.roi_align import LevelRoIAlign
from litvit.dense.transform import paste_masks

TINY = dict(embed_dim=8, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8))


def retinanet_anchors() -> MMDetAnchorGenerator:
    return create_dense_model("retinanet_litv2_s", 3, backbone_kwargs=TINY, fpn_channels=16).anchor_generator


def test_retinanet_anchor_sizes_are_float_and_ratio_major():
    base = retinanet_anchors().base_anchors(8, torch.float32, torch.device("cpu"))  # (9, 4)
    w, h = base[:, 2] - base[:, 0], base[:, 3] - base[:, 1]
    areas = (w * h).sqrt().view(3, 3)  # ratio-major, scale-minor
    expected = torch.tensor([32.0, 32 * 2 ** (1 / 3), 32 * 2 ** (2 / 3)])  # 32, 40.32, 50.80: not truncated to int
    for row in areas:
        torch.testing.assert_close(row, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close((h / w).view(3, 3)[:, 0], torch.tensor([0.5, 1.0, 2.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(base[:, :2], -base[:, 2:])  # centred at 0 (offset 0), not rounded
    assert not torch.equal(base, base.round())


def test_anchor_strides_are_fixed():
    """torchvision derives a level's stride as image // feature (800 // 13 = 61 for P6); mmdet's are fixed."""
    gen = retinanet_anchors()
    feats = [torch.zeros(1, 1, math.ceil(800 / s), math.ceil(1216 / s)) for s in (8, 16, 32, 64, 128)]
    anchors = gen(ImageList(torch.zeros(1, 3, 800, 1216), [(800, 1216)]), feats)[0]
    counts = [f.shape[-2] * f.shape[-1] * 9 for f in feats]
    p6 = anchors.split(counts)[3].view(13, 19, 9, 4)
    centres = (p6[..., :2] + p6[..., 2:]) / 2  # (13, 19, 9, 2)
    torch.testing.assert_close(centres[1, 1, 0], torch.tensor([64.0, 64.0]))
    torch.testing.assert_close(centres[12, 18, 4], torch.tensor([18 * 64.0, 12 * 64.0]))
    assert gen.num_anchors_per_location() == [9] * 5


def test_box_coder_clamps_both_ways():
    coder = MMDetBoxCoder((1.0, 1.0, 1.0, 1.0))
    anchor = torch.tensor([[0.0, 0.0, 100.0, 50.0]])
    for dw, expected in [(-20.0, math.exp(-WH_RATIO_CLIP)), (20.0, math.exp(WH_RATIO_CLIP))]:
        box = coder.decode_single(torch.tensor([[0.0, 0.0, dw, dw]]), anchor)
        w, h = box[0, 2] - box[0, 0], box[0, 3] - box[0, 1]
        torch.testing.assert_close(w, torch.tensor(100 * expected))
        torch.testing.assert_close(h, torch.tensor(50 * expected))
    rcnn = MMDetBoxCoder((10.0, 10.0, 5.0, 5.0))  # mmdet stds (0.1, 0.1, 0.2, 0.2)
    box = rcnn.decode_single(torch.tensor([[1.0, 2.0, -100.0, 0.5]]), anchor)  # dw clamp after / 5
    torch.testing.assert_close(box[0, 2] - box[0, 0], torch.tensor(100 * math.exp(-WH_RATIO_CLIP)))
    torch.testing.assert_close(box[0, 3] - box[0, 1], torch.tensor(50 * math.exp(0.1)))
    torch.testing.assert_close((box[0, 0] + box[0, 2]) / 2, torch.tensor(50 + 0.1 * 100))


def test_roi_level_boundaries():
    pool = LevelRoIAlign(7)
    sides = torch.tensor([20.0, 111.9, 112.0, 223.9, 224.0, 447.9, 448.0, 2000.0])
    boxes = torch.stack([torch.zeros_like(sides), torch.zeros_like(sides), sides, sides], dim=1)
    assert pool.levels(boxes).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_roi_align_is_aligned_with_adaptive_sampling():
    """A 32-pixel box ([16, 48) -> level 0, stride 4: feature cells [4, 12)) on a ramp map (value = column) pools
    the mean of 2 x 2 samples per bin at cell offsets 0.5 and 1.5 from the bin start after aligned=True's half-pixel
    shift: 4.5, 6.5, ... (aligned=False would give 5, 7, ...; 2 fixed samples at the 1/4 and 3/4 of the bin)."""
    ramp = torch.arange(64.0).repeat(64, 1)[None, None]  # (1, 1, 64, 64), value = x
    feats = {"0": ramp, "1": ramp[..., ::2, ::2], "2": ramp[..., ::4, ::4], "3": ramp[..., ::8, ::8]}
    out = LevelRoIAlign(4)(feats, [torch.tensor([[16.0, 16.0, 48.0, 48.0]])], [(256, 256)])
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([4.5, 6.5, 8.5, 10.5]))


def test_paste_masks_follows_the_float_box():
    """Pixel centres (x + 0.5) sampled bilinearly inside the float box, zeros outside: with a 2 x 2 mask of ones
    in the box x in [10, 30) (cells of 10 px), the values fall linearly over the 5 px on either side of each edge
    (pixel 30, centre 0.5 px outside: 0.45; pixel 31: 0.35) and within the box (pixel 29: 0.55)."""
    masks = torch.ones(2, 1, 2, 2)
    boxes = torch.tensor([[10.0, 20.0, 30.0, 40.0], [0.0, 0.0, 0.0, 0.0]])  # the second box is empty
    pasted = paste_masks(masks, boxes, (50, 60))
    assert pasted.shape == (2, 1, 50, 60)
    row = pasted[0, 0, 30]
    expected = torch.tensor([0.0, 0.45, 0.55, 1.0, 0.55, 0.45, 0.35, 0.0])
    torch.testing.assert_close(row[[4, 9, 10, 15, 29, 30, 31, 35]], expected)
    assert pasted[0, 0, :15].sum() == 0 and pasted[0, 0, 45:].sum() == 0
    assert pasted[1].abs().sum() == 0


def test_retinanet_topk_rules():
    """'anchor' (mmdet 2.11): the top anchors by their best class, then every class of theirs above the threshold;
    'pair' (mmdet 3.x / torchvision): the top (anchor, class) pairs above the threshold."""
    model = create_dense_model("retinanet_litv2_s", 2, backbone_kwargs=TINY, fpn_channels=16, topk_candidates=2)
    logits = torch.logit(torch.tensor([[0.9, 0.80], [0.85, 0.01], [0.2, 0.01], [0.01, 0.01]]))
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 4) + torch.arange(4.0)[:, None] * 20
    deltas = torch.zeros(4, 4)
    model.topk_rule = "anchor"  # anchors 0 and 1 kept (best scores 0.9, 0.85), with all their classes > 0.05
    boxes, scores, labels = model._candidates(logits, deltas, anchors, (200, 200))
    assert sorted(zip(labels.tolist(), scores.tolist())) == [
        (0, pytest.approx(0.85)),
        (0, pytest.approx(0.9)),
        (1, pytest.approx(0.8)),
    ]
    model.topk_rule = "pair"  # the two best pairs: (anchor 0, class 0) and (anchor 1, class 0)
    boxes, scores, labels = model._candidates(logits, deltas, anchors, (200, 200))
    assert scores.tolist() == pytest.approx([0.9, 0.85]) and labels.tolist() == [0, 0]
    torch.testing.assert_close(boxes, anchors[:2])


def test_skipping_resize_keeps_the_image():
    model = create_dense_model("retinanet_litv2_s", 2, backbone_kwargs=TINY, fpn_channels=16, min_size=None)
    img = torch.rand(3, 70, 90)
    images, _ = model.transform([img])
    assert images.image_sizes == [(70, 90)] and images.tensors.shape == (1, 3, 96, 96)  # padded to /32
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(images.tensors[0, :, :70, :90], (img - mean[:, None, None]) / std[:, None, None])
