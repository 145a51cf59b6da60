"""`litvit convert` on a released-layout dense file: a safetensors file that loads back into the same model."""

import json
from pathlib import Path

import torch
from safetensors import safe_open

from litvit.cli import main as cli
from litvit.convert import convert_checkpoint
from litvit.dense import create_dense_model

FIXTURES = Path(__file__).parents[1] / "data" / "official" / "dense"


def official_file(stem: str, tmp_path: Path):
    fixture = torch.load(FIXTURES / f"{stem}.pt", weights_only=True)
    path = tmp_path / f"{stem}.pth"
    torch.save({"meta": {"CLASSES": ("a", "b", "c")}, "state_dict": fixture["state_dict"]}, path)
    return fixture, path


def test_convert_a_mask_rcnn_file(tmp_path):
    fixture, src = official_file("litv2_mask_rcnn_tiny", tmp_path)
    kwargs = dict(backbone_kwargs=dict(fixture["backbone_kwargs"]), **fixture["model_kwargs"])
    dst = tmp_path / "mask_rcnn.safetensors"
    name, used = convert_checkpoint(src, dst, "mask_rcnn_litv2_s", **kwargs)
    assert name == "mask_rcnn_litv2_s" and used["num_classes"] == 3
    with safe_open(str(dst), "pt") as f:
        meta = f.metadata()
    assert meta["litvit_model"] == "mask_rcnn_litv2_s" and json.loads(meta["litvit_kwargs"])["num_classes"] == 3
    from_official = create_dense_model(name, checkpoint=str(src), **kwargs).state_dict()
    converted = create_dense_model(name, checkpoint=str(dst), **kwargs).state_dict()  # litvit layout, num_classes read
    assert set(converted) == set(from_official)
    assert all(torch.equal(converted[k], from_official[k]) for k in converted)


def test_convert_a_file_of_another_size_is_exit_2_one_line(tmp_path, capsys):
    _, src = official_file("litv2_semantic_fpn_tiny", tmp_path)
    dst = tmp_path / "out.safetensors"
    assert cli(["convert", str(src), str(dst), "--model", "semantic_fpn_litv2_s"]) == 2  # full-size model, tiny file
    err = capsys.readouterr().err.strip()
    assert "does not fit semantic_fpn" in err and "different shapes" in err and len(err.splitlines()) == 1
    assert not dst.exists()
    assert cli(["convert", str(src), str(dst), "--model", "semantic_fpn_litv2_s", "--backbone", "seg"]) == 2
    assert "drop --backbone" in capsys.readouterr().err
