"""Each layer's `flops(H, W)`: the official per-module count of ARCHITECTURE.md section 6 (MACs, biases counted in
convs, norms one MAC per element, softmax / GELU / pooling / sampling not counted)."""

import pytest
import torch

from litvit.layers import (
    Attention,
    Block,
    DeformableTokenMerging,
    DWConv,
    DWConvMlp,
    HiLo,
    Mlp,
    MLPBlock,
    PatchEmbed,
    RelPosAttention,
)

SIZES = [(14, 14), (7, 9), (1, 1)]


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_mlp_flops_are_the_two_linears(h, w):
    assert Mlp(32, 128).flops(h, w) == 2 * h * w * 32 * 128


def test_mlp_keeps_timm_state_dict_keys():
    from timm.layers import Mlp as TimmMlp

    assert isinstance(Mlp(8, 16), TimmMlp)
    assert list(Mlp(8, 16).state_dict()) == list(TimmMlp(8, 16).state_dict())


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_dwconv_mlp_flops_add_the_depthwise_conv(h, w):
    # official: 2*R*R*C*C*4 for fc1 + fc2, plus conv(3, 4C, 4C, 1, 1, R, groups=4C) = 10 * 4C * R*R
    assert DWConv(128).flops(h, w) == 10 * 128 * h * w
    assert DWConvMlp(32, 128).flops(h, w) == 2 * h * w * 32 * 128 + 10 * 128 * h * w


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_global_attention_flops(h, w):
    n, c, heads = h * w, 64, 4
    expected = n * c * 3 * c + 2 * heads * n * (c // heads) * n + n * c * c
    assert RelPosAttention(c, heads, grid_size=(3, 3)).flops(h, w) == expected
    assert Attention(c, heads).flops(h, w) == expected


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_block_flops_are_norms_plus_submodules(h, w):
    c = 64
    mlp_block = MLPBlock(c, DWConvMlp(c, 4 * c))
    assert mlp_block.flops(h, w) == c * h * w + mlp_block.mlp.flops(h, w)
    attn_block = Block(c, HiLo(c, 4, window_size=2, alpha=0.5), DWConvMlp(c, 4 * c))
    assert attn_block.flops(h, w) == 2 * c * h * w + attn_block.attn.flops(h, w) + attn_block.mlp.flops(h, w)
    lit_block = Block(c, RelPosAttention(c, 4, grid_size=(2, 2)), Mlp(c, 4 * c))
    assert lit_block.flops(h, w) == 2 * c * h * w + lit_block.attn.flops(h, w) + 2 * h * w * c * 4 * c


def test_block_with_an_uncounted_attention_names_it():
    block = Block(8, torch.nn.Identity(), Mlp(8, 16))
    with pytest.raises(TypeError, match="no official count for Identity"):
        block.flops(4, 4)


@pytest.mark.parametrize(("h", "w"), [(56, 56), (7, 9), (2, 3)])
def test_dtm_flops_keep_the_12_channel_quirk(h, w):
    cin, cout = 96, 192
    oh, ow = h // 2, w // 2
    offset = 4 * cin * 12 * oh * ow + 12 * oh * ow  # counted with 12 output channels: the conv has 8
    deform = 4 * cin * cout * oh * ow + cout * oh * ow
    assert DeformableTokenMerging(cin, cout).flops(h, w) == offset + deform + oh * ow * cout


@pytest.mark.parametrize(("h", "w"), [(224, 224), (225, 230)])
def test_patch_embed_flops_take_the_image_size(h, w):
    # official: R0*R0*E*3*16 + R0*R0*E, on the image padded to a multiple of the patch size
    r0h, r0w = -(-h // 4), -(-w // 4)
    assert PatchEmbed(4, 3, 96).flops(h, w) == r0h * r0w * 96 * 3 * 16 + r0h * r0w * 96
    assert PatchEmbed(4, 3, 96, norm_layer=None).flops(h, w) == r0h * r0w * 96 * 3 * 16


def test_flops_methods_leave_scripting_alone():
    """flops() is plain Python next to forward(); TorchScript compiles only forward."""
    for module in (Mlp(8, 16), DWConvMlp(8, 16), DeformableTokenMerging(8, 16), PatchEmbed(4, 3, 8)):
        torch.jit.script(module)
