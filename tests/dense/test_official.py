"""First-class test: the official detectors and segmenter (mmdet / mmseg configs, OneDL forks) and litvit's give the
same outputs for the same weights and preprocessed input, and official checkpoints load with every tensor used.

Fixtures: tests/data/official/dense/*.pt (README.md beside them says how they were made).
"""

from pathlib import Path

import pytest
import torch

from litvit.dense import create_dense_model, from_official
from litvit.dense.official import infer_num_classes
from litvit.errors import CheckpointError

FIXTURES = Path(__file__).parents[1] / "data" / "official" / "dense"
BOX_TOL = 1e-3  # pixels
# Scores are probabilities after a deep float32 network: the order of accumulation in the GEMMs differs between CPU
# kernels (AVX-512 vs AVX2), so the same model and input give scores that differ slightly. Measured: at most 1.1e-6
# on an Intel AMX Xeon, 1.43e-5 (one score of 100) on an AVX2-only AMD EPYC.
SCORE_TOL = 5e-5
# Masks are probabilities resampled into the image at their boxes: at a mask's edge a small change of its logits or of
# its box (d pixels) moves the pasted probabilities by up to the edge's slope (~0.5 per pixel) times that change, so
# the mask bound follows BOX_TOL. Measured on an AVX2-only AMD EPYC: torch 2.14 1.6e-5; torch 2.6 1.2-1.5e-4 (11 of
# 49152 pixels over 1e-4, all on one mask's edge where its slope is 0.45-0.48 per pixel against a median of 0.018;
# boxes 7.8e-5 px apart).
MASK_TOL = BOX_TOL
LOGIT_TOL = 1e-4

# fixture -> litvit model name
MODELS = {
    "litv2_retinanet_tiny": "retinanet_litv2_s",
    "litv2ws4_retinanet_tiny": "retinanet_litv2_s_ws4",
    "lit_s_retinanet_tiny": "retinanet_lit_s",
    "litv2_mask_rcnn_tiny": "mask_rcnn_litv2_s",
    "lit_ti_mask_rcnn_tiny": "mask_rcnn_lit_ti",
    "litv2_semantic_fpn_tiny": "semantic_fpn_litv2_s",
    "lit_s_semantic_fpn_tiny": "semantic_fpn_lit_s",
}
DETECTORS = [k for k in MODELS if "semantic_fpn" not in k]


def load_fixture(stem: str) -> dict:
    return torch.load(FIXTURES / f"{stem}.pt", weights_only=True)


def backbone_kwargs(fixture: dict) -> dict:
    kwargs = dict(fixture["backbone_kwargs"])
    kwargs.pop("local_ws", None)  # the _ws4 model name sets it
    return kwargs


def official_file(fixture: dict, tmp_path: Path) -> Path:
    """The fixture's weights as an mmdet / mmseg checkpoint file (`meta` + `state_dict`)."""
    path = tmp_path / "official.pth"
    torch.save({"meta": {"config": "tiny", "CLASSES": ("a", "b", "c")}, "state_dict": fixture["state_dict"]}, path)
    return path


def build(stem: str, fixture: dict, checkpoint, **kwargs) -> torch.nn.Module:
    if fixture["arch"] != "semantic_fpn":  # the fixture's input is already normalised and sized
        kwargs = dict(min_size=None, image_mean=(0.0, 0.0, 0.0), image_std=(1.0, 1.0, 1.0), **kwargs)
    if fixture["arch"] == "retinanet":
        kwargs.setdefault("topk_rule", "pair")  # the fixtures come from mmdet 3.x, whose rules these are
    if fixture["arch"] == "mask_rcnn":
        kwargs.setdefault("rpn_drop_empty", True)
    return create_dense_model(
        MODELS[stem],
        kwargs.pop("num_classes", None),
        checkpoint=checkpoint,
        backbone_kwargs=backbone_kwargs(fixture),
        **fixture["model_kwargs"],
        **kwargs,
    ).eval()


def assert_same_detections(out: dict, ref: dict) -> None:
    assert len(out["scores"]) == len(ref["scores"]) > 0
    assert torch.equal(out["labels"], ref["labels"].long())
    torch.testing.assert_close(out["scores"], ref["scores"], atol=SCORE_TOL, rtol=0)
    torch.testing.assert_close(out["boxes"], ref["boxes"], atol=BOX_TOL, rtol=0)
    if "masks" in ref:
        assert out["masks"].shape == ref["masks"].shape
        torch.testing.assert_close(out["masks"], ref["masks"], atol=MASK_TOL, rtol=0)


@pytest.mark.parametrize("stem", DETECTORS)
def test_detector_matches_official(stem, tmp_path):
    fixture = load_fixture(stem)
    model = build(stem, fixture, str(official_file(fixture, tmp_path)))
    refs = fixture["outputs"]["detections"]
    with torch.no_grad():
        outs = model(fixture["input"])
    assert len(outs) == len(refs) == 2  # two images of different sizes in one batch
    for out, ref in zip(outs, refs):
        assert_same_detections(out, ref)


@pytest.mark.parametrize("stem", [k for k in DETECTORS if "mask_rcnn" in k])
def test_mask_rcnn_masks_match_official(stem):
    fixture = load_fixture(stem)
    model = build(stem, fixture, fixture["state_dict"], box_detections_per_img=4)
    with torch.no_grad():
        outs = model(fixture["input"])
    for out, ref in zip(outs, fixture["outputs"]["top4"]):
        assert out["masks"].shape[1:] == (1, *ref["masks"].shape[-2:])
        assert_same_detections(out, ref)


@pytest.mark.parametrize("stem", [k for k in MODELS if "semantic_fpn" in k])
def test_semantic_fpn_matches_official(stem, tmp_path):
    fixture = load_fixture(stem)
    model = build(stem, fixture, str(official_file(fixture, tmp_path)))
    x = fixture["input"]  # (2, 3, 90, 122): not a multiple of 32 (ADE20K test images are not padded)
    with torch.no_grad():
        logits, quarter = model(x), model.decode(x)
    torch.testing.assert_close(logits, fixture["outputs"]["logits"], atol=LOGIT_TOL, rtol=0)
    torch.testing.assert_close(quarter, fixture["outputs"]["quarter"], atol=LOGIT_TOL, rtol=0)


@pytest.mark.parametrize("stem", [k for k in DETECTORS if "retinanet" in k])
def test_retinanet_candidate_rules_match_mmdet_2_11_and_3(stem):
    """With 50 candidates per level the rules disagree: 'anchor' reproduces mmdet 2.11 (the release's evaluation:
    its nms_pre step and its multiclass_nms, run from the vendored 2.11 source), 'pair' mmdet 3.x."""
    fixture = load_fixture(stem)
    for rule, key in (("anchor", "nms_pre50_mmdet211"), ("pair", "nms_pre50_mmdet3")):
        model = build(stem, fixture, fixture["state_dict"], topk_rule=rule, topk_candidates=50)
        with torch.no_grad():
            outs = model(fixture["input"])
        for out, ref in zip(outs, fixture["outputs"][key]):
            assert_same_detections(out, ref)
    counts = [[len(d["scores"]) for d in fixture["outputs"][k]] for k in ("nms_pre50_mmdet211", "nms_pre50_mmdet3")]
    assert counts[0] != counts[1]  # the two references differ: the test tells the rules apart


def test_detector_normalises_and_keeps_size_like_the_official_pipeline():
    """Images in [0, 1] through the model's own ImageNet normalisation (mmdet normalises 0-255 with the same
    mean / std): the same detections."""
    stem = "litv2_retinanet_tiny"
    fixture = load_fixture(stem)
    mean, std = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    model = create_dense_model(
        MODELS[stem],
        checkpoint=fixture["state_dict"],
        backbone_kwargs=backbone_kwargs(fixture),
        min_size=None,
        topk_rule="pair",
        **fixture["model_kwargs"],
    ).eval()
    with torch.no_grad():
        outs = model([x * std + mean for x in fixture["input"]])
    for out, ref in zip(outs, fixture["outputs"]["detections"]):
        assert_same_detections(out, ref)


@pytest.mark.parametrize("stem", list(MODELS))
def test_every_checkpoint_tensor_is_used(stem):
    """The key map is a bijection between the official file and the model: nothing dropped, nothing left over."""
    fixture = load_fixture(stem)
    arch = fixture["arch"]
    mapped = from_official(fixture["state_dict"], arch)
    model = build(stem, fixture, None, num_classes=fixture["num_classes"])
    assert len(mapped) == len(fixture["state_dict"])
    assert set(mapped) == set(model.state_dict())
    model.load_state_dict(mapped, strict=True)


def test_background_class_moves_from_last_to_first():
    """mmdet's fc_cls row 80-style background (last) is torchvision's row 0; regressor / mask logits get a zero
    background slot in front of the official rows."""
    fixture = load_fixture("litv2_mask_rcnn_tiny")
    sd, mapped = fixture["state_dict"], from_official(fixture["state_dict"], "mask_rcnn")
    cls, cls_t = sd["roi_head.bbox_head.fc_cls.weight"], mapped["roi_heads.box_predictor.cls_score.weight"]
    assert torch.equal(cls_t[0], cls[-1]) and torch.equal(cls_t[1:], cls[:-1])
    reg, reg_t = sd["roi_head.bbox_head.fc_reg.weight"], mapped["roi_heads.box_predictor.bbox_pred.weight"]
    assert torch.equal(reg_t[4:], reg) and not reg_t[:4].any()
    logit_t = mapped["roi_heads.mask_predictor.mask_fcn_logits.weight"]
    assert torch.equal(logit_t[1:], sd["roi_head.mask_head.conv_logits.weight"]) and not logit_t[:1].any()


def test_retinanet_extra_levels_map_to_p6_p7():
    fixture = load_fixture("litv2_retinanet_tiny")
    sd = fixture["state_dict"]
    mapped = from_official(sd, "retinanet")
    assert torch.equal(mapped["backbone.fpn.extra_blocks.p6.weight"], sd["neck.fpn_convs.3.conv.weight"])
    assert torch.equal(mapped["backbone.fpn.extra_blocks.p7.weight"], sd["neck.fpn_convs.4.conv.weight"])


@pytest.mark.parametrize(
    "stem, other",
    [("litv2_retinanet_tiny", "mask_rcnn_litv2_s"), ("litv2_mask_rcnn_tiny", "retinanet_litv2_s")],
)
def test_a_file_of_another_arch_is_one_line_naming_keys(stem, other, tmp_path):
    fixture = load_fixture(stem)
    path = str(official_file(fixture, tmp_path))
    with pytest.raises(CheckpointError, match=f"does not hold a {other.split('_lit')[0]} model .it holds a") as err:
        create_dense_model(other, checkpoint=path, backbone_kwargs=backbone_kwargs(fixture), fpn_channels=16)
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError) as err:  # the class count given: the keys that do not fit are named
        create_dense_model(other, 3, checkpoint=path, backbone_kwargs=backbone_kwargs(fixture), fpn_channels=16)
    message = str(err.value)
    assert "\n" not in message
    assert "missing from the checkpoint" in message and "not in the model" in message


def test_a_file_for_another_backbone_size_names_the_shapes(tmp_path):
    fixture = load_fixture("litv2_retinanet_tiny")
    with pytest.raises(CheckpointError, match="different shapes") as err:
        create_dense_model(
            "retinanet_litv2_s",
            checkpoint=str(official_file(fixture, tmp_path)),
            backbone_kwargs={**backbone_kwargs(fixture), "embed_dim": 16},
            fpn_channels=16,
        )
    assert "\n" not in str(err.value)


def test_num_classes_is_read_from_the_checkpoint():
    for stem in MODELS:
        fixture = load_fixture(stem)
        arch = fixture["arch"]
        assert infer_num_classes(fixture["state_dict"], arch) == fixture["num_classes"]
        mapped = from_official(fixture["state_dict"], arch)  # the litvit layout (a converted file) too
        assert infer_num_classes(mapped, arch) == fixture["num_classes"]
