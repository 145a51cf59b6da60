"""HiLo attention against an independent re-statement of ARCHITECTURE.md §3 (the official forward)."""

import math

import pytest
import torch
from torch import nn

from litvit.layers import HiLo

from .helpers import hilo_reference, randomize

TOL = 1e-5


def _check_against_reference(dim, heads, s, alpha, H, W, B=2, seed=0):
    torch.manual_seed(seed)
    m = randomize(HiLo(dim, heads, window_size=s, alpha=alpha), seed).eval()
    x = torch.randn(B, H, W, dim)
    with torch.no_grad():
        out = m(x)
        ref = hilo_reference(m, x)
    assert out.shape == (B, H, W, dim)
    assert ref.shape == (B, H, W, dim)
    diff = (out - ref).abs().max().item()
    assert diff <= TOL, f"max abs diff {diff} for dim={dim} heads={heads} s={s} alpha={alpha} size={H}x{W}"


# ------------------------------------------------------------------------------------------------ reference equality


def test_reference_is_not_trivially_self_consistent():
    """Guard: the reference must be sensitive to the channel order of the concat (Hi-Fi first)."""
    torch.manual_seed(0)
    m = randomize(HiLo(16, 4, window_size=2, alpha=0.5)).eval()
    x = torch.randn(1, 4, 4, 16)
    with torch.no_grad():
        out = m(x)
        ref = hilo_reference(m, x)
    swapped = torch.cat([ref[..., m.h_dim :], ref[..., : m.h_dim]], dim=-1)
    assert (out - ref).abs().max() <= TOL
    assert (out - swapped).abs().max() > 1e-3


@pytest.mark.parametrize(
    "s,H,W", [(2, 4, 4), (2, 8, 8), (2, 14, 14), (3, 6, 6), (3, 9, 9), (4, 8, 8), (4, 12, 12), (2, 4, 8), (3, 6, 3)]
)
def test_matches_reference_divisible(s, H, W):
    _check_against_reference(16, 4, s, 0.5, H, W)


@pytest.mark.parametrize("s", [2, 3, 4])
@pytest.mark.parametrize("size", [(5, 7), (7, 5), (1, 1), (1, 9), (3, 3), (9, 1), (6, 10)])
def test_matches_reference_odd_and_rectangular(s, size):
    _check_against_reference(16, 4, s, 0.5, *size)


@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("size", [(6, 6), (5, 7)])
def test_matches_reference_alpha(alpha, size):
    _check_against_reference(32, 8, 2, alpha, *size)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("size", [(4, 4), (3, 5), (1, 1)])
def test_matches_reference_window_one(alpha, size):
    _check_against_reference(16, 4, 1, alpha, *size)


def test_matches_reference_official_stage3_shape():
    """The released stage-3 configuration (dim 384 -> here scaled: 12 heads, s=2, alpha 0.9) at 14x14."""
    _check_against_reference(48, 12, 2, 0.9, 14, 14, B=1)


def test_qk_scale_override_used():
    torch.manual_seed(0)
    m = randomize(HiLo(16, 4, window_size=2, alpha=0.5, qk_scale=0.1)).eval()
    assert m.scale == pytest.approx(0.1)
    m_default = randomize(HiLo(16, 4, window_size=2, alpha=0.5)).eval()
    x = torch.randn(1, 4, 4, 16)
    with torch.no_grad():
        assert (m(x) - m_default(x)).abs().max() > 1e-4


# ------------------------------------------------------------------------------------------------ s == 1 is MSA


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_window_one_equals_multihead_attention(alpha):
    dim, heads = 24, 4
    torch.manual_seed(1)
    m = randomize(HiLo(dim, heads, window_size=1, alpha=alpha), seed=1).eval()
    assert m.h_heads == 0
    assert m.l_heads == heads
    assert getattr(m, "h_qkv", None) is None
    assert getattr(m, "h_proj", None) is None

    mha = nn.MultiheadAttention(dim, heads, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([m.l_q.weight, m.l_kv.weight], dim=0))
        mha.in_proj_bias.copy_(torch.cat([m.l_q.bias, m.l_kv.bias], dim=0))
        mha.out_proj.weight.copy_(m.l_proj.weight)
        mha.out_proj.bias.copy_(m.l_proj.bias)
    mha.eval()

    x = torch.randn(2, 3, 5, dim)
    with torch.no_grad():
        out = m(x)
        tokens = x.reshape(2, 15, dim)
        ref, _ = mha(tokens, tokens, tokens, need_weights=False)
    assert (out.reshape(2, 15, dim) - ref).abs().max() <= TOL


# ------------------------------------------------------------------------------------------------ structure


def test_alpha_zero_is_all_hifi():
    m = HiLo(32, 8, window_size=2, alpha=0.0)
    assert m.l_heads == 0 and m.h_heads == 8
    for name in ("l_q", "l_kv", "l_proj"):
        assert getattr(m, name, None) is None
    assert list(m.state_dict().keys()) == ["h_qkv.weight", "h_qkv.bias", "h_proj.weight", "h_proj.bias"]
    assert m.h_qkv.weight.shape == (96, 32)
    assert m.h_proj.weight.shape == (32, 32)


def test_alpha_one_is_all_lofi():
    m = HiLo(32, 8, window_size=2, alpha=1.0)
    assert m.l_heads == 8 and m.h_heads == 0
    for name in ("h_qkv", "h_proj"):
        assert getattr(m, name, None) is None
    assert list(m.state_dict().keys()) == [
        "l_q.weight",
        "l_q.bias",
        "l_kv.weight",
        "l_kv.bias",
        "l_proj.weight",
        "l_proj.bias",
    ]


def test_state_dict_keys_and_shapes_official_stage3():
    """ARCHITECTURE.md §3 table, LITv2-S/M stage 3: dim 384, 12 heads, s=2, alpha 0.9."""
    m = HiLo(384, 12, window_size=2, alpha=0.9)
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert list(shapes) == [
        "l_q.weight",
        "l_q.bias",
        "l_kv.weight",
        "l_kv.bias",
        "l_proj.weight",
        "l_proj.bias",
        "h_qkv.weight",
        "h_qkv.bias",
        "h_proj.weight",
        "h_proj.bias",
    ]
    assert shapes["l_q.weight"] == (320, 384)
    assert shapes["l_kv.weight"] == (640, 384)
    assert shapes["l_proj.weight"] == (320, 320)
    assert shapes["h_qkv.weight"] == (192, 384)
    assert shapes["h_proj.weight"] == (64, 64)


def test_state_dict_keys_official_stage4_and_no_bias():
    m = HiLo(96, 4, window_size=1, alpha=0.9)
    assert list(m.state_dict().keys()) == [
        "l_q.weight",
        "l_q.bias",
        "l_kv.weight",
        "l_kv.bias",
        "l_proj.weight",
        "l_proj.bias",
    ]
    m = HiLo(32, 4, window_size=2, alpha=0.5, qkv_bias=False)
    assert list(m.state_dict().keys()) == [
        "l_q.weight",
        "l_kv.weight",
        "l_proj.weight",
        "l_proj.bias",
        "h_qkv.weight",
        "h_proj.weight",
        "h_proj.bias",
    ]


@pytest.mark.parametrize(
    "dim,heads,alpha,l_heads,h_heads",
    [
        (384, 12, 0.9, 10, 2),
        (512, 16, 0.9, 14, 2),
        (64, 8, 0.5, 4, 4),
        (60, 10, 0.7, 7, 3),
        (64, 4, 0.99, 3, 1),
        (64, 4, 0.2, 0, 4),
        (64, 4, 1, 4, 0),
    ],
)
def test_head_split_truncates(dim, heads, alpha, l_heads, h_heads):
    m = HiLo(dim, heads, window_size=2, alpha=alpha)
    assert (m.l_heads, m.h_heads) == (l_heads, h_heads)
    assert m.l_heads == int(heads * alpha)
    assert m.l_dim == l_heads * dim // heads
    assert m.h_dim == h_heads * dim // heads


# ------------------------------------------------------------------------------------------------ layouts and shapes


@pytest.mark.parametrize("size", [(4, 4), (5, 7), (1, 1)])
def test_token_input_matches_map_input(size):
    H, W = size
    torch.manual_seed(2)
    m = randomize(HiLo(16, 4, window_size=2, alpha=0.5), seed=2).eval()
    x = torch.randn(2, H, W, 16)
    with torch.no_grad():
        out_map = m(x)
        out_tok = m(x.reshape(2, H * W, 16), size=(H, W))
        out_tok_list = m(x.reshape(2, H * W, 16), size=[H, W])
    assert out_tok.shape == (2, H * W, 16)
    assert torch.equal(out_tok, out_tok_list)
    assert (out_tok - out_map.reshape(2, H * W, 16)).abs().max() <= 1e-6


def test_map_input_with_matching_size_is_accepted():
    m = randomize(HiLo(16, 4)).eval()
    x = torch.randn(1, 3, 5, 16)
    with torch.no_grad():
        assert torch.equal(m(x, size=(3, 5)), m(x))


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (13, 17), (17, 13)])
@pytest.mark.parametrize("s,alpha", [(2, 0.5), (3, 0.25), (1, 0.5), (2, 0.0), (2, 1.0)])
def test_output_shape_equals_input_shape(size, s, alpha):
    m = HiLo(16, 4, window_size=s, alpha=alpha)
    x = torch.randn(2, *size, 16)
    with torch.no_grad():
        out = m(x)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_hifi_is_window_local_on_padded_map():
    """Hi-Fi only: changing the lone real token of the bottom-right padded window changes that output only."""
    torch.manual_seed(3)
    m = randomize(HiLo(16, 4, window_size=2, alpha=0.0), seed=3).eval()  # Hi-Fi only: strictly window-local
    x = torch.randn(1, 5, 5, 16)
    y = x.clone()
    y[0, 4, 4] += 1.0  # the bottom-right 1x1 remainder window
    with torch.no_grad():
        ox, oy = m(x), m(y)
    changed = (ox - oy).abs().amax(dim=-1)[0] > 1e-7
    expected = torch.zeros(5, 5, dtype=torch.bool)
    expected[4, 4] = True
    assert torch.equal(changed, expected)


# ------------------------------------------------------------------------------------------------ flops


def test_flops_official_readme_number():
    assert HiLo(384, 12, window_size=2, alpha=0.5).flops(14, 14) == 83467776


@pytest.mark.parametrize("H", [7, 14, 15])
def test_flops_width_defaults_to_height(H):
    m = HiLo(384, 12, window_size=2, alpha=0.9)
    assert m.flops(H) == m.flops(H, H)


def _official_flops(dim, heads, s, alpha, N):
    """The official HiLo.flops(N), verbatim from ARCHITECTURE.md §3 (square maps)."""
    head_dim = int(dim / heads)
    l_heads = int(heads * alpha)
    h_heads = heads - l_heads
    if s == 1:
        h_heads, l_heads = 0, heads
    h_dim, l_dim = h_heads * head_dim, l_heads * head_dim
    H = int(N**0.5)
    Hp = s * math.ceil(H / s)
    Np = Hp * Hp
    kv = (Hp // s) ** 2
    hifi = Np * dim * h_dim * 3 + (Np / s / s) * (s * s) ** 2 * h_dim * 2 + Np * h_dim * h_dim
    lofi = Np * dim * l_dim + kv * dim * l_dim * 2 + Np * l_dim * kv * 2 + Np * l_dim * l_dim
    return hifi + lofi


@pytest.mark.parametrize(
    "dim,heads,s,alpha",
    [(384, 12, 2, 0.9), (768, 24, 1, 0.9), (512, 16, 2, 0.9), (384, 12, 2, 0.0), (384, 12, 2, 1.0), (96, 4, 3, 0.5)],
)
@pytest.mark.parametrize("H", [7, 14, 13])
def test_flops_matches_official_formula_square(dim, heads, s, alpha, H):
    m = HiLo(dim, heads, window_size=s, alpha=alpha)
    assert m.flops(H) == _official_flops(dim, heads, s, alpha, H * H)


# ------------------------------------------------------------------------------------------------ gradients


def test_every_parameter_gets_gradient():
    torch.manual_seed(4)
    m = HiLo(16, 4, window_size=2, alpha=0.5).train()
    x = torch.randn(2, 5, 7, 16, requires_grad=True)
    out = m(x)
    (out * torch.randn_like(out)).sum().backward()
    names = [n for n, _ in m.named_parameters()]
    assert set(names) == {
        "l_q.weight",
        "l_q.bias",
        "l_kv.weight",
        "l_kv.bias",
        "l_proj.weight",
        "l_proj.bias",
        "h_qkv.weight",
        "h_qkv.bias",
        "h_proj.weight",
        "h_proj.bias",
    }
    for name, p in m.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name
    assert x.grad is not None and x.grad.abs().sum() > 0
