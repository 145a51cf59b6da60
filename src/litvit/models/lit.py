"""LIT-S/M/B: "Less is More: Pay Less Attention in Vision Transformers" (Pan, Zhuang, Lin, Zhu, Cai; AAAI 2022).

The same skeleton as LITv2 (attention-free early stages, deformable token merging), with a plain MLP and global
self-attention with a relative-position bias in the last two stages. The classifier carries bias tables (and index
buffers) for its `img_size`; at any other size the tables are resized bicubically, the rule of the official dense
backbones, which are `LITBackbone` here (tables sized for a reference image of `pretrain_img_size`, no index buffer).
"""

import math
from functools import partial
from typing import Any, Dict, Sequence, Tuple, Union

import torch
from timm.layers import trunc_normal_
from timm.models import generate_default_cfgs, register_model
from torch import nn

from ..checkpoint import unwrap_state_dict
from ..layers.attention import RelPosAttention, resize_relative_position_table
from ..layers.block import Block, MLPBlock
from ..layers.ffn import Mlp
from ..options import to_2tuple
from ._helpers import LIT_PAPER, LIT_RELEASES, build_model, cfg
from ._loading import OUTPUT_NORMS, backbone_weights, load_into
from ._pyramid import (
    BlockFactory,
    BlockOptions,
    PyramidBackbone,
    PyramidClassifier,
    factory_kwargs,
    init_linear_and_norm,
    stage_grid_sizes,
)

__all__ = ["LIT", "LITBackbone"]


def relpos_blocks(options: BlockOptions, reference: Tuple[int, int], index_buffer: bool) -> BlockFactory:
    """LIT's blocks: in stage i, relative-position MSA (bias tables sized for the `reference` image) + MLP where
    has_msa[i], else the MLP alone."""
    grids = stage_grid_sizes(reference, options.patch_size, options.num_stages)

    def make_block(stage: int, dim: int, num_heads: int, drop_path: float) -> nn.Module:
        mlp = Mlp(dim, int(dim * options.mlp_ratio), drop=options.drop_rate)
        if not options.has_msa[stage]:
            return MLPBlock(dim, mlp, drop_path)
        grid = grids[stage]
        if min(grid) < 1:
            raise ValueError(f"the reference image is too small: stage {stage} would have a {grid[0]}x{grid[1]} map")
        attn = RelPosAttention(
            dim, num_heads, grid, qkv_bias=options.qkv_bias, qk_scale=options.qk_scale, index_buffer=index_buffer
        )
        return Block(dim, attn, mlp, drop_path)

    return make_block


def _init_tables(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, RelPosAttention):
            trunc_normal_(m.relative_position_bias_table, std=0.02)


class LIT(PyramidClassifier):
    """LIT-S/M/B image classifier (timm model API). Runs at any input size (bias tables resized as needed).

    The bias tables are sized for `img_size`; `num_classes`, `global_pool` and the architecture keywords
    (`depths`, `embed_dim`, `has_msa`, ...) are those of `PyramidClassifier` and `PyramidTrunk`.
    """

    @factory_kwargs
    def __init__(self, img_size: Union[int, Sequence[int]] = 224, **kwargs: Any):
        reference = to_2tuple(img_size)
        super().__init__(partial(relpos_blocks, reference=reference, index_buffer=True), **kwargs)
        self.img_size = reference
        self.apply(init_linear_and_norm)
        _init_tables(self)

    @torch.jit.ignore
    def no_weight_decay_keywords(self) -> set:
        return {"relative_position_bias_table"}

    @torch.jit.ignore
    def load_pretrained(self, checkpoint_path: str) -> None:
        """Load an official LIT file or a litvit checkpoint (timm's custom-load hook; see models._loading)."""
        load_into(self, checkpoint_path, checkpoint_filter_fn)


class LITBackbone(PyramidBackbone):
    """LIT-S/M/B backbone of the official detection (`task='det'`, tables for an 800-pixel reference image) and
    segmentation (`task='seg'`, 512 pixels) code; `pretrain_img_size` sets another reference. The other keywords
    are those of `LIT` plus `task` and `out_indices` (`PyramidBackbone`); `img_size` is accepted for symmetry."""

    @factory_kwargs
    def __init__(
        self,
        task: str = "det",
        pretrain_img_size: Union[int, Sequence[int], None] = None,
        img_size: Union[int, Sequence[int], None] = None,
        **kwargs: Any,
    ):
        if pretrain_img_size is None:
            pretrain_img_size = 800 if task == "det" else 512
        reference = to_2tuple(pretrain_img_size, "pretrain_img_size")
        super().__init__(partial(relpos_blocks, reference=reference, index_buffer=False), task=task, **kwargs)
        self.pretrain_img_size = reference
        self.apply(init_linear_and_norm)
        _init_tables(self)

    def load_pretrained(self, checkpoint_path: str) -> None:
        """Load ImageNet weights (tables resized to the reference grid, as the official code does) or an official
        mmdet / mmseg checkpoint; output norms absent from an ImageNet file keep their initialisation."""
        load_into(self, checkpoint_path, checkpoint_filter_fn, ignore_missing=OUTPUT_NORMS)


def checkpoint_filter_fn(state_dict: Dict[str, Any], model: nn.Module) -> Dict[str, torch.Tensor]:
    """Official LIT-S/M/B files -> this model's state_dict.

    Relative-position tables of another reference size are resized bicubically to the model's grid (the official
    dense code's rule) and `relative_position_index` is taken from the model (it is a pure function of the grid). For
    the dense backbone, mmdet / mmseg checkpoints lose their `backbone.` prefix and ImageNet files their head, final
    norm and index buffers.
    """
    sd = unwrap_state_dict(state_dict)
    if isinstance(model, LITBackbone):
        sd = backbone_weights(sd)
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


def _create(variant: str, pretrained: bool = False, **kwargs: Any) -> LIT:
    return build_model(LIT, variant, pretrained, checkpoint_filter_fn, **dict(LIT_ARCHS[variant], **kwargs))


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
    return _create("lit_s", pretrained, **kwargs)


@register_model
def lit_m(pretrained: bool = False, **kwargs) -> LIT:
    return _create("lit_m", pretrained, **kwargs)


@register_model
def lit_b(pretrained: bool = False, **kwargs) -> LIT:
    return _create("lit_b", pretrained, **kwargs)
