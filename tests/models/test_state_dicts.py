"""Every variant's state_dict equals the official one (spec/state_dicts/*.tsv) key for key, shape for shape."""

from pathlib import Path

import pytest
import timm
import torch

import litvit  # noqa: F401  (registers the models)
from litvit.models import create_backbone

TSV_DIR = Path(__file__).parents[1] / "data" / "state_dicts"


def read_tsv(path: Path):
    rows = []
    for line in path.read_text().splitlines()[1:]:
        key, shape, dtype, kind = line.split("\t")
        dims = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
        rows.append((key, dims, dtype, kind))
    return rows


def build(variant: str) -> torch.nn.Module:
    for task in ("det", "seg"):
        suffix = f"_{task}_backbone"
        if variant.endswith(suffix):
            return create_backbone(variant[: -len(suffix)], task=task)
    if variant == "litv2_b_384":
        return timm.create_model("litv2_b", img_size=384)
    return timm.create_model(variant)


TSVS = sorted(TSV_DIR.glob("*.tsv"))


def test_every_variant_has_a_table():
    assert len(TSVS) == 18


@pytest.mark.parametrize("path", TSVS, ids=lambda p: p.stem)
def test_state_dict_matches_official(path: Path):
    with torch.device("meta"):  # shapes only: no memory, no init cost
        model = build(path.stem)
    ours = model.state_dict()
    expected = read_tsv(path)
    assert list(ours) == [key for key, *_ in expected]
    params = dict(model.named_parameters())
    for key, shape, dtype, kind in expected:
        assert tuple(ours[key].shape) == shape, key
        assert str(ours[key].dtype) == f"torch.{dtype}", key
        assert (key in params) == (kind == "param"), key
