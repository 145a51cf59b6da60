"""Tiny models for the viz tests: every family at a few dozen pixels, a second or less per forward on a CPU."""

import pytest
import timm
import torch

import litvit  # noqa: F401  (registers the models)

TINY = {
    "litv2": ("litv2_nano", {}),
    "lit": ("lit_s", dict(img_size=64, embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4))),
    "lit_ti": ("lit_ti", dict(img_size=64, embed_dims=(16, 32, 32, 64), depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4))),
}


def tiny(family: str, **kwargs) -> torch.nn.Module:
    name, base = TINY[family]
    return timm.create_model(name, **{**base, **kwargs}).eval()


@pytest.fixture(params=sorted(TINY))
def family(request) -> str:
    return request.param


@pytest.fixture
def image() -> torch.Tensor:
    return torch.randn(1, 3, 64, 64)
