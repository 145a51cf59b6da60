"""The attention benchmark's layers: the official-style HiLo baseline equals litvit's HiLo, peers keep shapes."""

import pytest
import torch

from litvit.bench.attention_layers import HiLoMatmul, build_layer, pvt_sr_ratio
from litvit.bench.config import LAYERS
from litvit.bench.subject import count_step_macs, make_input
from litvit.errors import BenchError
from litvit.layers import HiLo

from ..layers.helpers import randomize


@pytest.mark.parametrize("window", [1, 2, 3])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("size", [(8, 8), (7, 7), (9, 13)])
def test_matmul_baseline_equals_hilo(window, alpha, size):
    seed = window * 10 + int(alpha * 10)
    hilo = randomize(HiLo(48, num_heads=6, window_size=window, alpha=alpha), seed=seed, std=0.1).eval()
    ref = HiLoMatmul.from_hilo(hilo)
    assert (ref.l_heads, ref.h_heads) == (hilo.l_heads, hilo.h_heads)
    x = torch.randn(2, *size, 48)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), hilo(x), atol=1e-5, rtol=1e-5)


def test_matmul_baseline_copies_weights_not_shares():
    hilo = HiLo(32, num_heads=4, window_size=2, alpha=0.5)
    ref = HiLoMatmul.from_hilo(hilo)
    assert set(ref.state_dict()) == set(hilo.state_dict())
    assert ref.l_q.weight.data_ptr() != hilo.l_q.weight.data_ptr()


def test_pvt_sr_ratio_follows_pvtv2_stages():
    assert [pvt_sr_ratio(s, s) for s in (56, 28, 14, 7)] == [8, 4, 2, 1]
    assert pvt_sr_ratio(3, 3) == 1 and pvt_sr_ratio(28, 56) == 4


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("size", [(14, 14), (10, 13)])
def test_layers_map_to_map(name, size):
    layer = build_layer(name, 48, 6, size).eval()
    x = make_input((2, *size, 48), torch.device("cpu"))
    with torch.no_grad():
        y = layer(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_hilo_macs_match_official_formula_and_baseline():
    size = (14, 14)
    x = make_input((1, *size, 96), torch.device("cpu"))
    hilo, ref = build_layer("hilo", 96, 12, size, 2, 0.9), build_layer("hilo_matmul", 96, 12, size, 2, 0.9)
    assert count_layer_macs(hilo, x, "infer") == count_layer_macs(ref, x, "infer") == hilo.flops(*size)
    assert count_layer_macs(hilo, x, "train") > 2 * hilo.flops(*size)


def count_layer_macs(layer, x, mode):
    return count_step_macs(layer, x, mode, per_call_mode=False)


def test_unknown_layer():
    with pytest.raises(BenchError, match="unknown attention layer 'flash'"):
        build_layer("flash", 48, 6, (7, 7))
