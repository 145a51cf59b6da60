"""LITv2: "Fast Vision Transformers with HiLo Attention" (Pan, Cai, Zhuang; NeurIPS 2022).

Attention-free early stages (a depthwise-conv FFN only), HiLo attention in the last two, deformable token merging
between stages. Every variant's state_dict equals the official one key for key, so the released checkpoints load
with strict=True; the same modules make the classifier (`LITv2`) and the detection / segmentation backbone
(`LITv2Backbone`), and both run at any input size.
"""

from functools import partial
from typing import Any, Dict, Sequence, Union

import torch
from timm.models import generate_default_cfgs, register_model
from torch import nn

from ..checkpoint import unwrap_state_dict
from ..layers.block import Block, MLPBlock
from ..layers.ffn import DWConvMlp
from ..layers.hilo import HiLo
from ..options import to_2tuple
from ..variants import ALPHA_TAGS
from ._helpers import LITV2_RELEASES, build_model, cfg
from ._loading import OUTPUT_NORMS, backbone_weights, load_into
from ._pyramid import (
    BlockFactory,
    BlockOptions,
    PyramidBackbone,
    PyramidClassifier,
    factory_kwargs,
    init_linear_and_norm,
    per_stage,
)

__all__ = ["LITv2", "LITv2Backbone"]


def hilo_blocks(options: BlockOptions, alpha: float, local_ws: Sequence[int]) -> BlockFactory:
    """LITv2's blocks: in stage i, HiLo attention (window local_ws[i], a fraction `alpha` of the heads on the
    low-frequency path) + DW-conv FFN where has_msa[i], else the DW-conv FFN alone."""
    local_ws = per_stage("local_ws", local_ws, options.num_stages, "window", (0, 0, 2, 1))
    for i, (msa, ws) in enumerate(zip(options.has_msa, local_ws)):
        if msa and (isinstance(ws, bool) or not isinstance(ws, int) or ws < 1):
            raise ValueError(f"local_ws[{i}] is the HiLo window of an attention stage and must be >= 1, got {ws!r}")

    def make_block(stage: int, dim: int, num_heads: int, drop_path: float) -> nn.Module:
        mlp = DWConvMlp(dim, int(dim * options.mlp_ratio), drop=options.drop_rate)
        if not options.has_msa[stage]:
            return MLPBlock(dim, mlp, drop_path)
        attn = HiLo(
            dim,
            num_heads,
            window_size=local_ws[stage],
            alpha=alpha,
            qkv_bias=options.qkv_bias,
            qk_scale=options.qk_scale,
        )
        return Block(dim, attn, mlp, drop_path)

    return make_block


class LITv2(PyramidClassifier):
    """LITv2 image classifier (timm model API).

    `img_size` only sets the default resolution (pretrained config, `flops()`): the network has no
    resolution-dependent parameters and runs at any input size; sides that are not multiples of the patch size or
    the HiLo window are zero-padded as in the official dense backbones. `alpha` and `local_ws` configure HiLo
    (`hilo_blocks`); `num_classes`, `global_pool` and the architecture keywords (`depths`, `embed_dim`, ...) are
    those of `PyramidClassifier` and `PyramidTrunk`.
    """

    @factory_kwargs
    def __init__(
        self,
        img_size: Union[int, Sequence[int]] = 224,
        alpha: float = 0.9,
        local_ws: Sequence[int] = (0, 0, 2, 1),
        **kwargs: Any,
    ):
        super().__init__(partial(hilo_blocks, alpha=alpha, local_ws=local_ws), **kwargs)
        self.img_size = to_2tuple(img_size)
        self.alpha = alpha
        self.apply(init_linear_and_norm)

    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        return set()

    @torch.jit.ignore
    def load_pretrained(self, checkpoint_path: str) -> None:
        """Load an official LITv2 file or a litvit checkpoint (timm's custom-load hook; see models._loading)."""
        load_into(self, checkpoint_path, checkpoint_filter_fn)


class LITv2Backbone(PyramidBackbone):
    """LITv2 backbone of the official detection (`task='det'`) and segmentation (`task='seg'`) code; the keywords
    are those of `LITv2` plus `task` and `out_indices` (`PyramidBackbone`), and `img_size` is accepted for
    symmetry (the backbone has no fixed size)."""

    @factory_kwargs
    def __init__(
        self,
        task: str = "det",
        alpha: float = 0.9,
        local_ws: Sequence[int] = (0, 0, 2, 1),
        img_size: Union[int, Sequence[int], None] = None,
        **kwargs: Any,
    ):
        super().__init__(partial(hilo_blocks, alpha=alpha, local_ws=local_ws), task=task, **kwargs)
        self.apply(init_linear_and_norm)

    def load_pretrained(self, checkpoint_path: str) -> None:
        """Load ImageNet weights (official LITv2 or litvit) or an official mmdet / mmseg checkpoint; output norms
        absent from an ImageNet file keep their initialisation, as in the official code."""
        load_into(self, checkpoint_path, checkpoint_filter_fn, ignore_missing=OUTPUT_NORMS)


def checkpoint_filter_fn(state_dict: Dict[str, Any], model: nn.Module) -> Dict[str, torch.Tensor]:
    """Official LITv2 files -> this model's state_dict.

    Accepts `{'model': sd}` (the official trainer's files), a bare state_dict, `module.` prefixes and, for the dense
    backbone, mmdet / mmseg checkpoints (`state_dict` with a `backbone.` prefix) or ImageNet files (their head and
    final norm dropped). The official and litvit layouts are otherwise identical.
    """
    sd = unwrap_state_dict(state_dict)
    return backbone_weights(sd) if isinstance(model, LITv2Backbone) else sd


def _create(variant: str, pretrained: bool = False, **kwargs: Any) -> LITv2:
    """A registered LITv2: its architecture, and the settings its pretrained tag implies (alpha, 384 pixels)."""
    tag = kwargs.get("pretrained_cfg")
    if isinstance(tag, str) and tag in ALPHA_TAGS:  # the alpha-ablation checkpoints need their own head split
        alpha = ALPHA_TAGS[tag]
        if kwargs.get("alpha", alpha) != alpha:
            raise ValueError(
                f"tag {variant}.{tag} holds weights for alpha={alpha}, but alpha={kwargs['alpha']} was given"
            )
        kwargs["alpha"] = alpha
    if tag == "in1k_384":  # the fine-tuned 384 weights: default resolution (flops(), configs) 384
        kwargs.setdefault("img_size", 384)
    return build_model(LITv2, variant, pretrained, checkpoint_filter_fn, **dict(LITV2_ARCHS[variant], **kwargs))


_ALPHA_FILES = {0.0: "alpha_0.pth", 1.0: "alpha_1.pth"}

default_cfgs = generate_default_cfgs(
    {
        "litv2_s.in1k": cfg(url=LITV2_RELEASES + "v1.0/litv2_s.pth"),
        **{
            f"litv2_s.{tag}": cfg(url=LITV2_RELEASES + "v1.1/" + _ALPHA_FILES.get(a, f"alpha_{a}.pth"))
            for tag, a in ALPHA_TAGS.items()
        },
        "litv2_m.in1k": cfg(url=LITV2_RELEASES + "v1.0/litv2_m.pth"),
        "litv2_b.in1k": cfg(url=LITV2_RELEASES + "v1.0/litv2_b.pth"),
        # A small LITv2 for quick runs (no released weights): the default model of `litvit train`.
        "litv2_nano": cfg(input_size=(3, 32, 32), pool_size=(1, 1), num_classes=10, crop_pct=1.0),
        "litv2_b.in1k_384": cfg(
            url=LITV2_RELEASES + "v1.0/litv2_b_384.pth", input_size=(3, 384, 384), pool_size=(12, 12), crop_pct=1.0
        ),
    }
)

# Hyper-parameters of the released models (spec/ARCHITECTURE.md section 1.1).
LITV2_ARCHS: Dict[str, Dict[str, Any]] = {
    "litv2_s": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.2),
    "litv2_m": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.3),
    "litv2_b": dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), drop_path_rate=0.5),
    # Not a released model: LITv2's design at a size that trains in minutes on a CPU (e.g. 32x32 digits).
    "litv2_nano": dict(embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), drop_path_rate=0.0),
}
# The official detection / segmentation configs train with less stochastic depth than ImageNet.
LITV2_DENSE_DROP_PATH = {"litv2_s": 0.2, "litv2_m": 0.2, "litv2_b": 0.3}


@register_model
def litv2_s(pretrained: bool = False, **kwargs) -> LITv2:
    return _create("litv2_s", pretrained, **kwargs)


@register_model
def litv2_m(pretrained: bool = False, **kwargs) -> LITv2:
    return _create("litv2_m", pretrained, **kwargs)


@register_model
def litv2_b(pretrained: bool = False, **kwargs) -> LITv2:
    return _create("litv2_b", pretrained, **kwargs)


@register_model
def litv2_nano(pretrained: bool = False, **kwargs) -> LITv2:
    """A small LITv2 (HiLo in the last two stages, DTM between stages) for quick CPU runs; no released weights."""
    return _create("litv2_nano", pretrained, **kwargs)
