"""Attention of one query token: probabilities over the keys (non-negative, summing to 1), spread over the image,
Hi-Fi confined to the query's window, the relative-position bias included."""

import numpy as np
import pytest
import torch

from litvit.errors import ConfigError
from litvit.layers.attention import RelPosAttention
from litvit.viz import attention

from .conftest import tiny


@pytest.mark.parametrize("size", [(64, 64), (70, 58)])
def test_every_head_is_a_distribution(family, size):
    r = attention(tiny(family), torch.randn(1, 3, *size), query=(0.3, 0.7))
    assert r.maps and [n for n, _ in r.maps] == [n for n, _ in r.raw]
    for (_, maps), (_, raw) in zip(r.maps, r.raw):
        assert maps.shape[1:] == size and maps.shape[0] == raw.shape[0]
        assert (raw >= 0).all() and (maps >= 0).all()
        np.testing.assert_allclose(raw.sum(axis=1), 1.0, atol=1e-5)


def test_entries_per_family(image):
    names = lambda family: [n for n, _ in attention(tiny(family), image).raw]  # noqa: E731
    assert names("litv2") == [
        "layers.2.blocks.0.attn.lofi",
        "layers.2.blocks.0.attn.hifi",
        "layers.2.blocks.1.attn.lofi",
        "layers.2.blocks.1.attn.hifi",
        "layers.3.blocks.0.attn.lofi",
    ]
    assert names("lit") == ["layers.2.blocks.0.attn", "layers.3.blocks.0.attn"]
    r = attention(tiny("lit_ti"), image)
    assert [n for n, _ in r.raw] == ["block3.0.attn", "block4.0.attn"]
    assert r.raw[1][1].shape[1] == 1 + 2 * 2  # the class token and stage 4's 2 x 2 map are keys


def test_hifi_stays_in_the_query_window(image):
    r = attention(tiny("litv2"), image, query=(0.3, 0.7))  # pixel (19.2, 44.8)
    hifi = dict(r.maps)["layers.2.blocks.0.attn.hifi"]  # stage 3: 16-pixel tokens, 2 x 2 windows of 32 pixels
    inside = np.zeros(hifi.shape[1:], bool)
    inside[0:32, 32:64] = True
    assert (hifi[:, ~inside] == 0).all()
    np.testing.assert_allclose(hifi[:, inside].sum(axis=1), 16 * 16, rtol=1e-5)  # probabilities x token pixels
    lofi = dict(r.maps)["layers.2.blocks.0.attn.lofi"]
    np.testing.assert_allclose(lofi.sum(axis=(1, 2)), 32 * 32, rtol=1e-5)  # pooled 2 x 2 tokens of 32 pixels


def test_relative_position_bias_is_included(image):
    model = tiny("lit")
    layer = model.layers[2].blocks[0].attn
    assert isinstance(layer, RelPosAttention) and layer.grid_size == (4, 4)
    with torch.no_grad():
        layer.relative_position_bias_table.zero_()
        layer.relative_position_bias_table[3 * 7 + 3] = 50.0  # offset (0, 0): every token attends to itself
    r = attention(model, image, query=(0.6, 0.1))  # pixel (38.4, 6.4): stage-3 token (2, 0) of 16 pixels
    raw = dict(r.raw)["layers.2.blocks.0.attn"]
    assert (raw[:, 2 * 4 + 0] > 0.99).all()
    maps = dict(r.maps)["layers.2.blocks.0.attn"]
    assert (maps[:, 32:48, 0:16] > 0.99).all()


def test_bad_query():
    with pytest.raises(ConfigError, match="query"):
        attention(tiny("litv2"), torch.randn(1, 3, 32, 32), query=(1.5, 0.5))
