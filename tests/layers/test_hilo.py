"""HiLo attention against an independent re-statement of ARCHITECTURE.md §3 (the official forward)."""

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from litvit.layers import HiLo

TOL = 1e-5


def _randomize(m: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial weights and biases everywhere (biases default to values that could hide ordering bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return m.eval()


def hilo_reference(m: HiLo, x: torch.Tensor) -> torch.Tensor:
    """Official HiLo forward (dense version), written out with explicit matmul + softmax.

    x: (B, H, W, C) -> (B, H, W, C). Reads only the weights of `m` and its hyper-parameters.
    """
    B, H, W, C = x.shape
    s = m.window_size
    num_heads = m.num_heads
    head_dim = int(C / num_heads)
    scale = head_dim**-0.5
    l_heads = int(num_heads * m.alpha)
    h_heads = num_heads - l_heads
    if s == 1:
        h_heads, l_heads = 0, num_heads
    h_dim, l_dim = h_heads * head_dim, l_heads * head_dim

    pad_r = (s - W % s) % s
    pad_b = (s - H % s) % s
    x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    Hp, Wp = x.shape[1], x.shape[2]
    assert Hp % s == 0 and Wp % s == 0

    outs = []
    if h_heads > 0:
        h_group, w_group = Hp // s, Wp // s
        total_groups = h_group * w_group
        xw = x.view(B, h_group, s, w_group, s, C).transpose(2, 3)
        qkv = m.h_qkv(xw).reshape(B, total_groups, -1, 3, h_heads, head_dim).permute(3, 0, 1, 4, 2, 5)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, G, h, s*s, d)
        attn = (q @ k.transpose(-2, -1)) * scale
        attn = attn.softmax(dim=-1)
        o = (attn @ v).transpose(2, 3).reshape(B, h_group, w_group, s, s, h_dim)
        o = o.transpose(2, 3).reshape(B, h_group * s, w_group * s, h_dim)
        outs.append(m.h_proj(o)[:, :H, :W])
    if l_heads > 0:
        q = m.l_q(x).reshape(B, Hp * Wp, l_heads, head_dim).permute(0, 2, 1, 3)
        if s > 1:
            x_ = x.permute(0, 3, 1, 2)
            x_ = nn.AvgPool2d(kernel_size=s, stride=s)(x_).reshape(B, C, -1).permute(0, 2, 1)
        else:
            x_ = x.reshape(B, Hp * Wp, C)
        kv = m.l_kv(x_).reshape(B, -1, 2, l_heads, head_dim).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        attn = (q @ k.transpose(-2, -1)) * scale
        attn = attn.softmax(dim=-1)
        o = (attn @ v).transpose(1, 2).reshape(B, Hp, Wp, l_dim)
        outs.append(m.l_proj(o)[:, :H, :W])
    return torch.cat(outs, dim=-1)


def _check_against_reference(dim, heads, s, alpha, H, W, B=2, seed=0):
    torch.manual_seed(seed)
    m = _randomize(HiLo(dim, heads, window_size=s, alpha=alpha), seed)
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
    m = _randomize(HiLo(16, 4, window_size=2, alpha=0.5))
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
    m = _randomize(HiLo(16, 4, window_size=2, alpha=0.5, qk_scale=0.1))
    assert m.scale == pytest.approx(0.1)
    m_default = _randomize(HiLo(16, 4, window_size=2, alpha=0.5))
    x = torch.randn(1, 4, 4, 16)
    with torch.no_grad():
        assert (m(x) - m_default(x)).abs().max() > 1e-4


# ------------------------------------------------------------------------------------------------ s == 1 is MSA


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_window_one_equals_multihead_attention(alpha):
    dim, heads = 24, 4
    torch.manual_seed(1)
    m = _randomize(HiLo(dim, heads, window_size=1, alpha=alpha), seed=1)
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
    m = _randomize(HiLo(16, 4, window_size=2, alpha=0.5), seed=2)
    x = torch.randn(2, H, W, 16)
    with torch.no_grad():
        out_map = m(x)
        out_tok = m(x.reshape(2, H * W, 16), size=(H, W))
        out_tok_list = m(x.reshape(2, H * W, 16), size=[H, W])
    assert out_tok.shape == (2, H * W, 16)
    assert torch.equal(out_tok, out_tok_list)
    assert (out_tok - out_map.reshape(2, H * W, 16)).abs().max() <= 1e-6


def test_map_input_with_matching_size_is_accepted():
    m = _randomize(HiLo(16, 4))
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
    m = _randomize(HiLo(16, 4, window_size=2, alpha=0.0), seed=3)  # Hi-Fi only: strictly window-local
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


# ------------------------------------------------------------------------------------------------ bad input


def test_dim_not_divisible_by_heads():
    with pytest.raises(ValueError, match=r"dim \(10\).*num_heads \(3\)"):
        HiLo(10, 3)


@pytest.mark.parametrize("alpha,shown", [(-0.1, "-0.1"), (1.5, "1.5"), ("0.5", "'0.5'"), (None, "None")])
def test_bad_alpha(alpha, shown):
    with pytest.raises(ValueError, match=r"alpha.*" + re.escape(shown)):
        HiLo(16, 4, alpha=alpha)


def test_bool_alpha_rejected():
    with pytest.raises(ValueError, match="alpha.*True"):
        HiLo(16, 4, alpha=True)


@pytest.mark.parametrize("window_size,shown", [(0, "0"), (-1, "-1"), (2.5, "2.5")])
def test_bad_window_size(window_size, shown):
    with pytest.raises(ValueError, match=r"window_size.*got " + re.escape(shown)):
        HiLo(16, 4, window_size=window_size)


@pytest.mark.parametrize("shape", [(4, 16), (1, 2, 2, 2, 16)])
def test_wrong_rank_input(shape):
    m = HiLo(16, 4)
    with pytest.raises(ValueError, match=rf"HiLo input.*{len(shape)}-D"):
        m(torch.randn(*shape))


def test_wrong_channels_map():
    m = HiLo(16, 4)
    with pytest.raises(ValueError, match=r"HiLo input.*16 channels.*\[1, 4, 4, 12\]"):
        m(torch.randn(1, 4, 4, 12))


def test_wrong_channels_tokens():
    m = HiLo(16, 4)
    with pytest.raises(ValueError, match=r"16 channels.*\[1, 16, 12\]"):
        m(torch.randn(1, 16, 12), size=(4, 4))


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_integer_dtype_is_type_error(dtype):
    m = HiLo(16, 4)
    with pytest.raises(TypeError, match=rf"HiLo input.*floating.*{str(dtype).split('.')[-1]}"):
        m(torch.zeros(1, 4, 4, 16, dtype=dtype))


def test_tokens_without_size():
    m = HiLo(16, 4)
    with pytest.raises(ValueError, match=r"HiLo input.*\(B, N, C\).*size=\(H, W\)"):
        m(torch.randn(1, 16, 16))


def test_size_inconsistent_with_tokens():
    m = HiLo(16, 4)
    with pytest.raises(ValueError, match=r"size=\(3, 5\) gives 15 tokens.*N=16"):
        m(torch.randn(1, 16, 16), size=(3, 5))


def test_size_inconsistent_with_map():
    m = HiLo(16, 4)
    with pytest.raises(ValueError, match=r"size=\(4, 5\).*\[1, 4, 4, 16\]"):
        m(torch.randn(1, 4, 4, 16), size=(4, 5))


# ------------------------------------------------------------------------------------ small-window inference path


def _count_sdpa(monkeypatch) -> list:
    import litvit.layers.hilo as hilo_module

    calls = []
    real = hilo_module.F.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(hilo_module.F, "scaled_dot_product_attention", counting)
    return calls


@pytest.mark.parametrize("s,grad,sdpa_calls", [(2, False, 0), (4, False, 0), (5, False, 1), (2, True, 1)])
def test_small_windows_use_matmul_attention_in_inference_only(monkeypatch, s, grad, sdpa_calls):
    """Windows of <= 16 tokens run matmul attention in eager CPU inference; training and larger windows keep SDPA;
    both compute the official function."""
    m = _randomize(HiLo(16, 4, window_size=s, alpha=0.0))  # all Hi-Fi: every SDPA call is a window call
    x = torch.randn(2, 7, 9, 16)
    calls = _count_sdpa(monkeypatch)
    with torch.set_grad_enabled(grad):
        out = m(x)
    assert len(calls) == sdpa_calls
    with torch.no_grad():
        ref = hilo_reference(m, x)
    assert (out.detach() - ref).abs().max().item() <= TOL


def test_small_window_path_bf16_autocast_close_to_fp32():
    """Under CPU bf16 autocast the matmul path returns the autocast dtype and stays near fp32."""
    m = _randomize(HiLo(32, 8, window_size=2, alpha=0.5))
    x = torch.randn(2, 6, 10, 32)
    with torch.no_grad():
        ref = m(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = m(x)
    assert out.shape == ref.shape and out.dtype == torch.bfloat16
    rel = ((out.float() - ref).abs().max() / ref.abs().max()).item()
    assert rel < 3e-2


@pytest.mark.parametrize(
    "s,alpha,sdpa_calls", [(2, 0.0, 0), (4, 0.0, 0), (5, 0.0, 1), (2, 0.5, 0), (5, 0.5, 1), (1, 0.5, 0)]
)
def test_attention_for_compiler_in_traced_graphs(monkeypatch, s, alpha, sdpa_calls):
    """With `_tracing(attention_for_compiler=True)` (the int8 export) a traced HiLo has no SDPA but for Hi-Fi
    windows of more than 16 tokens (tiny windows as broadcast sums, Lo-Fi as matmuls and a written-out softmax),
    and still computes the official function."""
    from litvit.export.program import _tracing

    m = _randomize(HiLo(16, 4, window_size=s, alpha=alpha))
    x = torch.randn(2, 7, 9, 16)
    calls = _count_sdpa(monkeypatch)
    with torch.no_grad():
        ref = hilo_reference(m, x)
        with _tracing(m, attention_for_compiler=True):
            program = torch.export.export(m, (x,), strict=False)  # traced: no eager fast path
        assert "_for_compiler" not in m.__dict__ and not m._for_compiler()  # restored
        out = program.module()(x)
    assert len(calls) == sdpa_calls
    assert (out - ref).abs().max().item() <= TOL


def test_attention_for_compiler_compiled_matches_reference():
    """Compiled by inductor, the plain forms agree with the official function within fp32 rounding."""
    from litvit.export.program import _tracing

    m = _randomize(HiLo(32, 8, window_size=2, alpha=0.5))
    x = torch.randn(3, 6, 10, 32)
    with torch.no_grad():
        ref = hilo_reference(m, x)
        with _tracing(m, attention_for_compiler=True):
            out = torch.compile(m, backend="inductor", dynamic=False)(x)
    assert (out - ref).abs().max().item() <= TOL
