"""FFNs, global attention, relative-position attention, patch embedding and blocks against explicit references
(ARCHITECTURE.md §2.1, §2.3, §2.4)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from litvit.layers import (
    Attention,
    Block,
    DWConvMlp,
    HiLo,
    Mlp,
    MLPBlock,
    PatchEmbed,
    RelPosAttention,
    relative_position_index,
)

from .helpers import randomize

# ------------------------------------------------------------------------------------------------ DWConvMlp


def dwmlp_official(m: DWConvMlp, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Official DWMlp on tokens (B, N, C): fc1 -> (B, 4C, H, W) -> dwconv -> tokens -> GELU -> fc2."""
    B, N, _ = x.shape
    x = m.fc1(x)
    hidden = x.shape[-1]
    x = x.transpose(1, 2).reshape(B, hidden, H, W)
    x = F.conv2d(x, m.dwconv.dwconv.weight, m.dwconv.dwconv.bias, stride=1, padding=1, groups=hidden)
    x = x.flatten(2).transpose(1, 2)
    x = F.gelu(x)
    return m.fc2(x)


@pytest.mark.parametrize("size", [(4, 4), (3, 5), (1, 1), (7, 2)])
def test_dwconvmlp_matches_official_token_formulation(size):
    H, W = size
    torch.manual_seed(0)
    m = randomize(DWConvMlp(8, 32)).eval()
    x = torch.randn(2, H, W, 8)
    with torch.no_grad():
        out = m(x)
        ref = dwmlp_official(m, x.reshape(2, H * W, 8), H, W)
    assert out.shape == (2, H, W, 8)
    assert (out.reshape(2, H * W, 8) - ref).abs().max() <= 1e-6


@pytest.mark.parametrize("size", [(4, 4), (3, 5), (1, 1)])
def test_dwconvmlp_as_convolutions_matches_official_token_formulation(size):
    """The graph the ONNX export traces (fc1 / fc2 as 1x1 convolutions) computes the same FFN, with gradients."""
    H, W = size
    torch.manual_seed(0)
    m = randomize(DWConvMlp(8, 32)).eval()
    m.pointwise_as_conv = True
    x = torch.randn(2, H, W, 8, requires_grad=True)
    out = m(x)
    ref = dwmlp_official(m, x.reshape(2, H * W, 8), H, W)
    assert out.shape == (2, H, W, 8)
    assert (out.reshape(2, H * W, 8) - ref).abs().max() <= 1e-6
    out.sum().backward()
    assert m.fc1.weight.grad is not None and m.fc1.weight.grad.abs().sum() > 0


def test_dwconvmlp_conv_is_spatial():
    """The depthwise conv mixes neighbours: changing one token changes its 3x3 neighbourhood and nothing else."""
    torch.manual_seed(1)
    m = randomize(DWConvMlp(4, 8), seed=1).eval()
    x = torch.randn(1, 5, 5, 4)
    y = x.clone()
    y[0, 2, 2] += 1.0
    with torch.no_grad():
        changed = (m(x) - m(y)).abs().amax(-1)[0] > 1e-7
    expected = torch.zeros(5, 5, dtype=torch.bool)
    expected[1:4, 1:4] = True
    assert torch.equal(changed, expected)


def test_dwconvmlp_init():
    torch.manual_seed(2)
    m = DWConvMlp(64, 1024)
    conv = m.dwconv.dwconv
    assert conv.groups == 1024 and conv.weight.shape == (1024, 1, 3, 3)
    std = conv.weight.std().item()
    target = math.sqrt(2.0 / 9.0)
    assert abs(std - target) / target < 0.1, std
    assert abs(conv.weight.mean().item()) < 0.05
    assert torch.count_nonzero(conv.bias) == 0


def test_dwconvmlp_state_dict_keys():
    assert list(DWConvMlp(4, 16).state_dict().keys()) == [
        "fc1.weight",
        "fc1.bias",
        "dwconv.dwconv.weight",
        "dwconv.dwconv.bias",
        "fc2.weight",
        "fc2.bias",
    ]


# ------------------------------------------------------------------------------------------------ Attention


def msa_reference(qkv: nn.Linear, proj: nn.Linear, x: torch.Tensor, heads: int) -> torch.Tensor:
    B, N, C = x.shape
    d = C // heads
    t = qkv(x).reshape(B, N, 3, heads, d).permute(2, 0, 3, 1, 4)
    q, k, v = t[0], t[1], t[2]
    attn = ((q @ k.transpose(-2, -1)) * d**-0.5).softmax(dim=-1)
    return proj((attn @ v).transpose(1, 2).reshape(B, N, C))


def test_attention_tokens_match_reference():
    torch.manual_seed(3)
    m = randomize(Attention(16, 4), seed=3).eval()
    x = torch.randn(2, 11, 16)
    with torch.no_grad():
        out = m(x)
        ref = msa_reference(m.qkv, m.proj, x, 4)
    assert out.shape == (2, 11, 16)
    assert (out - ref).abs().max() <= 1e-5


def test_attention_map_matches_reference():
    torch.manual_seed(4)
    m = randomize(Attention(16, 2), seed=4).eval()
    x = torch.randn(2, 3, 5, 16)
    with torch.no_grad():
        out = m(x)
        ref = msa_reference(m.qkv, m.proj, x.reshape(2, 15, 16), 2).reshape(2, 3, 5, 16)
    assert out.shape == (2, 3, 5, 16)
    assert (out - ref).abs().max() <= 1e-5


def test_attention_bad_input():
    with pytest.raises(ValueError, match=r"dim \(10\).*num_heads \(4\)"):
        Attention(10, 4)
    with pytest.raises(TypeError, match="Attention input.*floating"):
        Attention(16, 4)(torch.zeros(1, 4, 16, dtype=torch.long))


# ------------------------------------------------------------------------------------------------ RelPosAttention


def brute_index(H: int, W: int) -> torch.Tensor:
    coords = [(y, x) for y in range(H) for x in range(W)]
    n = len(coords)
    idx = torch.empty(n, n, dtype=torch.long)
    for p, (y1, x1) in enumerate(coords):
        for q, (y2, x2) in enumerate(coords):
            idx[p, q] = (y1 - y2 + H - 1) * (2 * W - 1) + (x1 - x2 + W - 1)
    return idx


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (4, 4), (3, 2)])
def test_relative_position_index_brute_force(size):
    idx = relative_position_index(*size)
    ref = brute_index(*size)
    assert idx.dtype == torch.int64
    assert idx.shape == ref.shape
    assert torch.equal(idx, ref)
    assert idx.min() >= 0 and idx.max() < (2 * size[0] - 1) * (2 * size[1] - 1)


def relpos_reference(m: RelPosAttention, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Official order: q scaled before the product, then bias added, softmax."""
    B, H, W, C = x.shape
    n, h, d = H * W, m.num_heads, C // m.num_heads
    t = m.qkv(x.reshape(B, n, C)).reshape(B, n, 3, h, d).permute(2, 0, 3, 1, 4)
    q, k, v = t[0], t[1], t[2]
    q = q * d**-0.5
    attn = (q @ k.transpose(-2, -1) + bias[None]).softmax(dim=-1)
    return m.proj((attn @ v).transpose(1, 2).reshape(B, H, W, C))


@pytest.mark.parametrize("index_buffer", [True, False])
def test_relpos_at_grid_size(index_buffer):
    torch.manual_seed(5)
    heads, grid = 2, (3, 4)
    m = randomize(RelPosAttention(16, heads, grid, index_buffer=index_buffer), seed=5).eval()
    table = m.relative_position_bias_table
    assert table.shape == (5 * 7, heads)
    n = 12
    idx = brute_index(*grid)
    expected_bias = table[idx.flatten()].view(n, n, heads).permute(2, 0, 1)
    with torch.no_grad():
        bias = m.relative_position_bias(*grid)
        assert torch.equal(bias, expected_bias)
        x = torch.randn(2, *grid, 16)
        out = m(x)
        ref = relpos_reference(m, x, expected_bias)
    assert out.shape == (2, 3, 4, 16)
    assert (out - ref).abs().max() <= 1e-5


def test_relpos_bias_matters():
    torch.manual_seed(6)
    m = randomize(RelPosAttention(16, 2, (3, 3)), seed=6).eval()
    x = torch.randn(1, 3, 3, 16)
    with torch.no_grad():
        a = m(x)
        m.relative_position_bias_table.zero_()
        b = m(x)
    assert (a - b).abs().max() > 1e-3


def test_relpos_other_size_interpolates_table():
    torch.manual_seed(7)
    heads = 3
    m = randomize(RelPosAttention(12, heads, (4, 4)), seed=7).eval()
    H, W = 3, 5
    with torch.no_grad():
        table = m.relative_position_bias_table
        grid = table.t().reshape(1, heads, 7, 7)
        resized = F.interpolate(grid, size=(2 * H - 1, 2 * W - 1), mode="bicubic", align_corners=False)
        resized = resized.reshape(heads, -1).t()
        n = H * W
        expected_bias = resized[brute_index(H, W).flatten()].view(n, n, heads).permute(2, 0, 1)
        bias = m.relative_position_bias(H, W)
        assert bias.shape == (heads, n, n)
        assert (bias - expected_bias).abs().max() <= 1e-6
        x = torch.randn(2, H, W, 12)
        out = m(x)
        ref = relpos_reference(m, x, expected_bias)
    assert out.shape == (2, H, W, 12)
    assert (out - ref).abs().max() <= 1e-5


def test_relpos_state_dict_index_buffer():
    with_buf = RelPosAttention(16, 2, (3, 4), index_buffer=True).state_dict()
    without = RelPosAttention(16, 2, (3, 4), index_buffer=False).state_dict()
    assert "relative_position_index" in with_buf
    assert with_buf["relative_position_index"].dtype == torch.int64
    assert with_buf["relative_position_index"].shape == (12, 12)
    assert torch.equal(with_buf["relative_position_index"], brute_index(3, 4))
    assert "relative_position_index" not in without
    assert set(with_buf) - set(without) == {"relative_position_index"}
    assert with_buf["relative_position_bias_table"].shape == (35, 2)


def test_relpos_bad_input():
    m = RelPosAttention(16, 2, (3, 3))
    with pytest.raises(ValueError, match=r"RelPosAttention input.*16 channels"):
        m(torch.randn(1, 3, 3, 8))
    with pytest.raises(ValueError, match=r"RelPosAttention input.*3-D"):
        m(torch.randn(1, 9, 16))
    with pytest.raises(ValueError, match=r"grid_size\[0\].*0"):
        RelPosAttention(16, 2, (0, 3))


# ------------------------------------------------------------------------------------------------ PatchEmbed


def test_patch_embed_pads_right_bottom():
    torch.manual_seed(8)
    m = randomize(PatchEmbed(patch_size=4, in_chans=3, embed_dim=8), seed=8).eval()
    x = torch.randn(2, 3, 10, 13)
    with torch.no_grad():
        out = m(x)
        padded = torch.zeros(2, 3, 12, 16)
        padded[:, :, :10, :13] = x
        ref = m.norm(F.conv2d(padded, m.proj.weight, m.proj.bias, stride=4).permute(0, 2, 3, 1))
        # Padding on the wrong side would give different numbers.
        wrong = torch.zeros(2, 3, 12, 16)
        wrong[:, :, 2:, 3:] = x
        ref_wrong = m.norm(F.conv2d(wrong, m.proj.weight, m.proj.bias, stride=4).permute(0, 2, 3, 1))
    assert out.shape == (2, 3, 4, 8)
    assert (out - ref).abs().max() <= 1e-5
    assert (out - ref_wrong).abs().max() > 1e-3


def test_patch_embed_exact_multiple_and_no_norm():
    torch.manual_seed(9)
    m = randomize(PatchEmbed(patch_size=4, in_chans=3, embed_dim=8, norm_layer=None), seed=9).eval()
    x = torch.randn(1, 3, 8, 12)
    with torch.no_grad():
        out = m(x)
        ref = F.conv2d(x, m.proj.weight, m.proj.bias, stride=4).permute(0, 2, 3, 1)
    assert out.shape == (1, 2, 3, 8)
    assert (out - ref).abs().max() <= 1e-5


# ------------------------------------------------------------------------------------------------ blocks


def test_mlp_block_formula():
    torch.manual_seed(10)
    blk = randomize(MLPBlock(8, Mlp(8, 32)), seed=10).eval()
    x = torch.randn(2, 3, 5, 8)
    with torch.no_grad():
        out = blk(x)
        h = F.layer_norm(x, (8,), blk.norm2.weight, blk.norm2.bias, eps=1e-5)
        h = F.linear(F.gelu(F.linear(h, blk.mlp.fc1.weight, blk.mlp.fc1.bias)), blk.mlp.fc2.weight, blk.mlp.fc2.bias)
        ref = x + h
    assert (out - ref).abs().max() <= 1e-5
    assert list(blk.state_dict().keys()) == [
        "norm2.weight",
        "norm2.bias",
        "mlp.fc1.weight",
        "mlp.fc1.bias",
        "mlp.fc2.weight",
        "mlp.fc2.bias",
    ]


def test_block_formula_with_hilo():
    torch.manual_seed(11)
    blk = randomize(Block(16, HiLo(16, 4, window_size=2, alpha=0.5), DWConvMlp(16, 64)), seed=11, std=0.2).eval()
    x = torch.randn(2, 5, 7, 16)
    with torch.no_grad():
        out = blk(x)
        y = x + blk.attn(blk.norm1(x))
        ref = y + blk.mlp(blk.norm2(y))
        # Not the parallel form x + attn(norm1(x)) + mlp(norm2(x)).
        parallel = x + blk.attn(blk.norm1(x)) + blk.mlp(blk.norm2(x))
    assert (out - ref).abs().max() <= 1e-5
    assert (out - parallel).abs().max() > 1e-3


def test_block_formula_with_attention_tokens():
    torch.manual_seed(12)
    blk = randomize(Block(16, Attention(16, 4), Mlp(16, 64)), seed=12, std=0.2).eval()
    x = torch.randn(2, 9, 16)
    with torch.no_grad():
        out = blk(x)
        y = x + msa_reference(blk.attn.qkv, blk.attn.proj, blk.norm1(x), 4)
        ref = y + blk.mlp(blk.norm2(y))
    assert (out - ref).abs().max() <= 1e-5


def _make_blocks(drop_path):
    torch.manual_seed(13)
    mlp_block = randomize(MLPBlock(8, Mlp(8, 16), drop_path=drop_path), seed=13)
    block = randomize(Block(8, Attention(8, 2), Mlp(8, 16), drop_path=drop_path), seed=14)
    return mlp_block, block


@pytest.mark.parametrize("which", [0, 1])
def test_drop_path_stochastic_in_train_deterministic_in_eval(which):
    blk = _make_blocks(0.5)[which]
    x = torch.randn(16, 3, 3, 8)
    blk.train()
    differ = False
    with torch.no_grad():
        for seed in range(5):
            torch.manual_seed(seed)
            a = blk(x)
            b = blk(x)
            if (a - b).abs().max() > 1e-6:
                differ = True
                break
    assert differ, "drop_path=0.5 in train mode gave identical outputs on every seed"

    blk.eval()
    with torch.no_grad():
        a, b = blk(x), blk(x)
        blk_ref = _make_blocks(0.0)[which].eval()
        blk_ref.load_state_dict(blk.state_dict())
        c = blk_ref(x)
    assert torch.equal(a, b)
    assert (a - c).abs().max() <= 1e-6


def test_drop_path_zero_is_identity_module():
    mlp_block, block = _make_blocks(0.0)
    assert isinstance(mlp_block.drop_path, nn.Identity)
    assert isinstance(block.drop_path, nn.Identity)
    mlp_block.train()
    x = torch.randn(4, 2, 2, 8)
    with torch.no_grad():
        assert torch.equal(mlp_block(x), mlp_block(x))


def test_relpos_index_cache_is_shared_and_autograd_safe():
    from litvit.layers.attention import RelPosAttention, _cached_flat_index, relative_position_index

    _cached_flat_index.cache_clear()
    attn = RelPosAttention(16, 2, grid_size=(4, 4))
    x = torch.randn(1, 3, 5, 16)
    with torch.inference_mode():
        attn(x)  # fills the cache inside inference mode
    out = attn(x.requires_grad_())
    out.sum().backward()  # the cached index must still be usable by autograd
    assert attn.relative_position_bias_table.grad is not None
    assert _cached_flat_index.cache_info().hits >= 1
    torch.testing.assert_close(_cached_flat_index(3, 5, "cpu"), relative_position_index(3, 5).flatten())
