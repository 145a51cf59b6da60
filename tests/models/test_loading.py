"""Weights are checked as they are fitted to a model (NaN / Inf refused, a replaced head announced), and every
list of variants the models keep is read from `litvit.variants` (the import layout: tests/test_imports.py)."""

import warnings

import pytest
import timm
import torch

import litvit  # noqa: F401
from litvit.checkpoint import CheckpointError, check_finite
from litvit.models import BACKBONES, LITv2, create_backbone
from litvit.models._loading import _candidates
from litvit.variants import ALPHA_TAGS, backbone_names, released_names

TINY = dict(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8))


def test_check_finite_names_the_tensors():
    sd = {"a": torch.ones(3), "b": torch.tensor([1.0, float("nan")]), "c": torch.tensor([float("inf")])}
    sd["idx"] = torch.arange(3)  # integer tensors cannot hold NaN: skipped
    with pytest.raises(CheckpointError, match=r"^x\.pth: 2 tensors hold NaN or Inf: b, c; the file is corrupt"):
        check_finite(sd, "x.pth")
    check_finite({"a": torch.ones(2), "m": torch.empty(2, device="meta")}, "fine.pth")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused_at_load(tmp_path, bad):
    """Before, such a file loaded silently and evaluating it crashed the process."""
    sd = LITv2(**TINY, num_classes=10).state_dict()
    names = ["layers.0.blocks.0.mlp.fc1.weight", "layers.2.blocks.0.attn.h_qkv.weight", "head.bias"]
    for name in names:
        sd[name] = sd[name].clone()
        sd[name].view(-1)[0] = bad
    path = tmp_path / "diverged.pth"
    torch.save({"model": sd}, path)
    with pytest.raises(CheckpointError, match=r"3 tensors hold NaN or Inf: " + r"\, ".join(names)) as excinfo:
        timm.create_model(
            "litv2_s", pretrained=True, num_classes=10, pretrained_cfg_overlay=dict(file=str(path)), **TINY
        )
    assert str(path) in str(excinfo.value) and "diverged run" in str(excinfo.value)
    with pytest.raises(CheckpointError, match=r"NaN or Inf"):  # the dense backbones load through the same path
        create_backbone("litv2_s", task="det", **TINY).load_pretrained(str(path))


def test_replaced_head_is_announced(tmp_path):
    path = tmp_path / "ten.pth"
    torch.save({"model": LITv2(**TINY, num_classes=10).state_dict()}, path)
    overlay = dict(file=str(path))
    with pytest.warns(UserWarning, match=r"has 10 classes and the model 7: the model's head is freshly initialised"):
        model = timm.create_model("litv2_s", pretrained=True, num_classes=7, pretrained_cfg_overlay=overlay, **TINY)
    assert model.head.out_features == 7
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same class count, or no head at all: nothing to announce
        timm.create_model("litv2_s", pretrained=True, num_classes=10, pretrained_cfg_overlay=overlay, **TINY)
        timm.create_model("litv2_s", pretrained=True, num_classes=0, pretrained_cfg_overlay=overlay, **TINY)
        wider = tmp_path / "wider.pth"  # another variant with the same class count: an error, and no warning
        torch.save({"model": LITv2(**dict(TINY, embed_dim=32), num_classes=7).state_dict()}, wider)
        with pytest.raises(CheckpointError, match=r"different shapes"):
            timm.create_model(
                "litv2_s", pretrained=True, num_classes=7, pretrained_cfg_overlay=dict(file=str(wider)), **TINY
            )


def test_lists_of_variants_come_from_the_table():
    assert backbone_names() == BACKBONES
    names = [name for name, _ in _candidates()]
    assert set(names) == set(released_names())
    assert sorted(kw["alpha"] for name, kw in _candidates() if name == "litv2_s") == sorted(set(ALPHA_TAGS.values()))
