"""LIT-S/M/B: "Less is More: Pay Less Attention in Vision Transformers" (Pan, Zhuang, Lin, Zhu, Cai; AAAI 2022).

The same skeleton as LITv2 (attention-free early stages, deformable token merging), with a plain MLP and global
self-attention with a relative-position bias in the last two stages. The classifier carries bias tables (and index
buffers) for its `img_size`; at any other size the tables are resized bicubically, the rule of the official dense
backbones, which are `LITBackbone` here (tables sized for a reference image of `pretrain_img_size`, no index buffer).
"""

import math
from typing import Any, Dict, List, Sequence, Tuple, Union

import torch
from timm.layers import trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from ..checkpoint import load_into, strip_prefix, unwrap_state_dict
from ..layers.attention import RelPosAttention, resize_relative_position_table
from ..layers.block import Block, MLPBlock
from ..layers.ffn import Mlp
from ._helpers import LIT_PAPER, LIT_RELEASES, cfg, prefer_own_loader
from ._pyramid import (
    BlockFactory,
    PyramidBackbone,
    PyramidClassifier,
    factory_kwargs,
    init_linear_and_norm,
    to_2tuple_size,
)
from .litv2 import dense_norm_indices

__all__ = ["LIT", "LITBackbone"]


def stage_grid_sizes(img_size: Tuple[int, int], patch_size: int, num_stages: int) -> List[Tuple[int, int]]:
    """Token-map side of every stage for an image: ceil(side / patch), then halved (floored) per token merge."""
    h, w = math.ceil(img_size[0] / patch_size), math.ceil(img_size[1] / patch_size)
    sizes = []
    for _ in range(num_stages):
        sizes.append((h, w))
        h, w = h // 2, w // 2
    return sizes


def lit_block_factory(
    grid_sizes: Sequence[Tuple[int, int]],
    has_msa: Sequence[int] = (0, 0, 1, 1),
    mlp_ratio: float = 4.0,
    qkv_bias: bool = True,
    qk_scale: Union[float, None] = None,
    drop_rate: float = 0.0,
    index_buffer: bool = True,
) -> BlockFactory:
    """Blocks of stage i: relative-position MSA + MLP where has_msa[i], else the MLP alone."""
    if len(has_msa) != len(grid_sizes):
        raise ValueError(f"has_msa ({list(has_msa)}) needs one entry per stage ({len(grid_sizes)})")

    def make_block(stage: int, dim: int, num_heads: int, drop_path: float) -> nn.Module:
        mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop_rate)
        if not has_msa[stage]:
            return MLPBlock(dim, mlp, drop_path)
        grid = grid_sizes[stage]
        if min(grid) < 1:
            raise ValueError(f"the reference image is too small: stage {stage} would have a {grid[0]}x{grid[1]} map")
        attn = RelPosAttention(dim, num_heads, grid, qkv_bias=qkv_bias, qk_scale=qk_scale, index_buffer=index_buffer)
        return Block(dim, attn, mlp, drop_path)

    return make_block


def _init_tables(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, RelPosAttention):
            trunc_normal_(m.relative_position_bias_table, std=0.02)


class LIT(PyramidClassifier):
    """LIT-S/M/B image classifier (timm model API). Runs at any input size (bias tables resized as needed)."""

    @factory_kwargs
    def __init__(
        self,
        img_size: Union[int, Sequence[int]] = 224,
        patch_size: int = 4,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: Union[float, None] = None,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.2,
        has_msa: Sequence[int] = (0, 0, 1, 1),
        norm_layer: Any = nn.LayerNorm,
    ):
        self_img_size = to_2tuple_size(img_size)
        grids = stage_grid_sizes(self_img_size, patch_size, len(depths))
        make_block = lit_block_factory(grids, has_msa, mlp_ratio, qkv_bias, qk_scale, drop_rate, index_buffer=True)
        super().__init__(
            make_block,
            num_classes=num_classes,
            global_pool=global_pool,
            norm_layer=norm_layer,
            patch_size=patch_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            depths=depths,
            num_heads=num_heads,
            drop_path_rate=drop_path_rate,
        )
        self.img_size = self_img_size
        self.apply(init_linear_and_norm)
        _init_tables(self)

    @torch.jit.ignore
    def no_weight_decay_keywords(self) -> set:
        return {"relative_position_bias_table"}

    @torch.jit.ignore
    def load_pretrained(self, checkpoint_path: str) -> None:
        """Load an official LIT file or a litvit checkpoint (timm's custom-load hook; see litvit.checkpoint)."""
        load_into(self, checkpoint_path, checkpoint_filter_fn)

    @torch.jit.ignore
    def flops(self, img_size: Union[int, Sequence[int], None] = None) -> int:
        """The official `model.flops()` count (MACs) at `img_size` (default: the model's)."""
        from ..flops import official_flops

        return official_flops(self, img_size)


class LITBackbone(PyramidBackbone):
    """LIT-S/M/B backbone of the official detection (`task='det'`, tables for an 800-pixel reference image, output
    norms on stages 1-3) and segmentation (`task='seg'`, 512 pixels, stages 0-3) code."""

    @factory_kwargs
    def __init__(
        self,
        task: str = "det",
        pretrain_img_size: Union[int, Sequence[int], None] = None,
        patch_size: int = 4,
        in_chans: int = 3,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: Union[float, None] = None,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.2,
        has_msa: Sequence[int] = (0, 0, 1, 1),
        out_indices: Sequence[int] = (0, 1, 2, 3),
        norm_layer: Any = nn.LayerNorm,
        img_size: Union[int, Sequence[int], None] = None,  # accepted for symmetry; the backbone has no fixed size
    ):
        norm_indices = dense_norm_indices(task, len(depths))
        if pretrain_img_size is None:
            pretrain_img_size = 800 if task == "det" else 512
        reference = to_2tuple_size(pretrain_img_size)
        grids = stage_grid_sizes(reference, patch_size, len(depths))
        make_block = lit_block_factory(grids, has_msa, mlp_ratio, qkv_bias, qk_scale, drop_rate, index_buffer=False)
        super().__init__(
            make_block,
            norm_indices=norm_indices,
            out_indices=out_indices,
            norm_layer=norm_layer,
            patch_size=patch_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            depths=depths,
            num_heads=num_heads,
            drop_path_rate=drop_path_rate,
        )
        self.task = task
        self.pretrain_img_size = reference
        self.apply(init_linear_and_norm)
        _init_tables(self)

    def load_pretrained(self, checkpoint_path: str) -> None:
        """Load ImageNet weights (tables resized to the reference grid, as the official code does) or an official
        mmdet / mmseg checkpoint; output norms absent from an ImageNet file keep their initialisation."""
        load_into(self, checkpoint_path, checkpoint_filter_fn, ignore_missing=("norm0.", "norm1.", "norm2.", "norm3."))


def checkpoint_filter_fn(state_dict: Dict[str, Any], model: nn.Module) -> Dict[str, torch.Tensor]:
    """Official LIT-S/M/B files -> this model's state_dict.

    Relative-position tables of another reference size are resized bicubically to the model's grid (the official
    dense code's rule) and `relative_position_index` is taken from the model (it is a pure function of the grid). For
    the dense backbone, mmdet / mmseg checkpoints lose their `backbone.` prefix and ImageNet files their head, final
    norm and index buffers.
    """
    sd = unwrap_state_dict(state_dict)
    if isinstance(model, LITBackbone):
        sd = strip_prefix(sd, "backbone.")
        sd = {k: v for k, v in sd.items() if not k.startswith(("head.", "norm."))}
    own = model.state_dict()
    out = {}
    for k, v in sd.items():
        if k.endswith("relative_position_index"):
            if k in own:
                out[k] = own[k]
            continue
        if k.endswith("relative_position_bias_table") and k in own and v.shape != own[k].shape:
            side = math.isqrt(v.shape[0])
            if side * side == v.shape[0] and side % 2 == 1 and v.shape[1] == own[k].shape[1]:
                grid = model.get_submodule(k.rsplit(".", 1)[0]).grid_size
                v = resize_relative_position_table(v, [(side + 1) // 2] * 2, list(grid))
        out[k] = v
    return out


def _create_lit(variant: str, pretrained: bool = False, **kwargs) -> LIT:
    kwargs = prefer_own_loader(kwargs)
    out_indices = kwargs.pop("out_indices", (0, 1, 2, 3))
    return build_model_with_cfg(
        LIT,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls="getter", out_indices=out_indices),
        **kwargs,
    )


default_cfgs = generate_default_cfgs(
    {
        "lit_s.in1k": cfg(url=LIT_RELEASES + "v1.0/lit_s.pth", paper=LIT_PAPER),
        "lit_m.in1k": cfg(url=LIT_RELEASES + "v1.0/lit_m.pth", paper=LIT_PAPER),
        "lit_b.in1k": cfg(url=LIT_RELEASES + "v1.0/lit_b.pth", paper=LIT_PAPER),
    }
)

# Hyper-parameters of the released models (spec/ARCHITECTURE.md section 1.2).
LIT_ARCHS: Dict[str, Dict[str, Any]] = {
    "lit_s": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.2),
    "lit_m": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.3),
    "lit_b": dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), drop_path_rate=0.5),
}


@register_model
def lit_s(pretrained: bool = False, **kwargs) -> LIT:
    return _create_lit("lit_s", pretrained, **dict(LIT_ARCHS["lit_s"], **kwargs))


@register_model
def lit_m(pretrained: bool = False, **kwargs) -> LIT:
    return _create_lit("lit_m", pretrained, **dict(LIT_ARCHS["lit_m"], **kwargs))


@register_model
def lit_b(pretrained: bool = False, **kwargs) -> LIT:
    return _create_lit("lit_b", pretrained, **dict(LIT_ARCHS["lit_b"], **kwargs))
