"""LITv2: "Fast Vision Transformers with HiLo Attention" (Pan, Cai, Zhuang; NeurIPS 2022).

Attention-free early stages (a depthwise-conv FFN only), HiLo attention in the last two, deformable token merging
between stages. Every variant's state_dict equals the official one key for key, so the released checkpoints load
with strict=True; the same modules make the classifier (`LITv2`) and the detection / segmentation backbone
(`LITv2Backbone`), and both run at any input size.
"""

from typing import Any, Dict, Sequence, Union

import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from ..checkpoint import load_into, strip_prefix, unwrap_state_dict
from ..layers.block import Block, MLPBlock
from ..layers.ffn import DWConvMlp
from ..layers.hilo import HiLo
from ._helpers import LITV2_RELEASES, cfg, prefer_own_loader
from ._pyramid import (
    BlockFactory,
    PyramidBackbone,
    PyramidClassifier,
    factory_kwargs,
    init_linear_and_norm,
    to_2tuple_size,
)

__all__ = ["LITv2", "LITv2Backbone"]


def litv2_block_factory(
    alpha: float = 0.9,
    local_ws: Sequence[int] = (0, 0, 2, 1),
    has_msa: Sequence[int] = (0, 0, 1, 1),
    mlp_ratio: float = 4.0,
    qkv_bias: bool = True,
    qk_scale: Union[float, None] = None,
    drop_rate: float = 0.0,
    num_stages: int = 4,
) -> BlockFactory:
    """Blocks of stage i: HiLo + DW-conv FFN where has_msa[i], else the DW-conv FFN alone."""
    if len(local_ws) != num_stages or len(has_msa) != num_stages:
        raise ValueError(
            f"local_ws ({list(local_ws)}) and has_msa ({list(has_msa)}) need one entry per stage ({num_stages})"
        )
    for i, (msa, ws) in enumerate(zip(has_msa, local_ws)):
        if msa and (isinstance(ws, bool) or not isinstance(ws, int) or ws < 1):
            raise ValueError(f"local_ws[{i}] is the HiLo window of an attention stage and must be >= 1, got {ws!r}")

    def make_block(stage: int, dim: int, num_heads: int, drop_path: float) -> nn.Module:
        mlp = DWConvMlp(dim, int(dim * mlp_ratio), drop=drop_rate)
        if not has_msa[stage]:
            return MLPBlock(dim, mlp, drop_path)
        attn = HiLo(dim, num_heads, window_size=local_ws[stage], alpha=alpha, qkv_bias=qkv_bias, qk_scale=qk_scale)
        return Block(dim, attn, mlp, drop_path)

    return make_block


class LITv2(PyramidClassifier):
    """LITv2 image classifier (timm model API).

    `img_size` only sets the default resolution (pretrained config, `flops()`): the network has no
    resolution-dependent parameters and runs at any input size; sides that are not multiples of the patch size or
    the HiLo window are zero-padded as in the official dense backbones.
    """

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
        alpha: float = 0.9,
        local_ws: Sequence[int] = (0, 0, 2, 1),
        has_msa: Sequence[int] = (0, 0, 1, 1),
        norm_layer: Any = nn.LayerNorm,
    ):
        make_block = litv2_block_factory(
            alpha, local_ws, has_msa, mlp_ratio, qkv_bias, qk_scale, drop_rate, num_stages=len(depths)
        )
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
        self.img_size = to_2tuple_size(img_size)
        self.alpha = alpha
        self.apply(init_linear_and_norm)

    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        return set()

    @torch.jit.ignore
    def load_pretrained(self, checkpoint_path: str) -> None:
        """Load an official LITv2 file or a litvit checkpoint (timm's custom-load hook; see litvit.checkpoint)."""
        load_into(self, checkpoint_path, checkpoint_filter_fn)

    @torch.jit.ignore
    def flops(self, img_size: Union[int, Sequence[int], None] = None) -> int:
        """The official `model.flops()` count (MACs) at `img_size` (default: the model's)."""
        from ..flops import official_flops

        return official_flops(self, img_size)


class LITv2Backbone(PyramidBackbone):
    """LITv2 backbone of the official detection (`task='det'`: output norms on stages 1-3) and segmentation
    (`task='seg'`: stages 0-3) code: four NCHW maps at strides 4, 8, 16, 32, any input size."""

    @factory_kwargs
    def __init__(
        self,
        task: str = "det",
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
        alpha: float = 0.9,
        local_ws: Sequence[int] = (0, 0, 2, 1),
        has_msa: Sequence[int] = (0, 0, 1, 1),
        out_indices: Sequence[int] = (0, 1, 2, 3),
        norm_layer: Any = nn.LayerNorm,
        img_size: Union[int, Sequence[int], None] = None,  # accepted for symmetry; the backbone has no fixed size
    ):
        norm_indices = dense_norm_indices(task, len(depths))
        make_block = litv2_block_factory(
            alpha, local_ws, has_msa, mlp_ratio, qkv_bias, qk_scale, drop_rate, num_stages=len(depths)
        )
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
        self.apply(init_linear_and_norm)

    def load_pretrained(self, checkpoint_path: str) -> None:
        """Load ImageNet weights (official LITv2 or litvit) or an official mmdet / mmseg checkpoint; output norms
        absent from an ImageNet file keep their initialisation, as in the official code."""
        load_into(self, checkpoint_path, checkpoint_filter_fn, ignore_missing=("norm0.", "norm1.", "norm2.", "norm3."))


def dense_norm_indices(task: str, num_stages: int = 4) -> tuple:
    """Which stage outputs the official dense code normalises: detection 1..3, segmentation all."""
    if task == "det":
        return tuple(range(1, num_stages))
    if task == "seg":
        return tuple(range(num_stages))
    raise ValueError(f"task must be 'det' (detection backbone) or 'seg' (segmentation backbone), got {task!r}")


def checkpoint_filter_fn(state_dict: Dict[str, Any], model: nn.Module) -> Dict[str, torch.Tensor]:
    """Official LITv2 files -> this model's state_dict.

    Accepts `{'model': sd}` (the official trainer's files), a bare state_dict, `module.` prefixes and, for the dense
    backbone, mmdet / mmseg checkpoints (`state_dict` with a `backbone.` prefix) or ImageNet files (their head and
    final norm dropped). The official and litvit layouts are otherwise identical.
    """
    sd = unwrap_state_dict(state_dict)
    if isinstance(model, LITv2Backbone):
        sd = strip_prefix(sd, "backbone.")
        sd = {k: v for k, v in sd.items() if not k.startswith(("head.", "norm."))}
    return sd


def _create_litv2(variant: str, pretrained: bool = False, **kwargs) -> LITv2:
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
    kwargs = prefer_own_loader(kwargs)
    out_indices = kwargs.pop("out_indices", (0, 1, 2, 3))
    return build_model_with_cfg(
        LITv2,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls="getter", out_indices=out_indices),
        **kwargs,
    )


# LITv2-S trained with other Lo-Fi head fractions (the paper's alpha ablation, release v1.1).
ALPHA_TAGS = {
    "in1k_alpha0": 0.0,
    "in1k_alpha0.2": 0.2,
    "in1k_alpha0.4": 0.4,
    "in1k_alpha0.5": 0.5,
    "in1k_alpha0.7": 0.7,
    "in1k_alpha0.9": 0.9,
    "in1k_alpha1": 1.0,
}
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
}
# Not a released model: LITv2's design at a size that trains in minutes on a CPU (e.g. 32x32 digits).
LITV2_NANO = dict(embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), drop_path_rate=0.0)
# The official detection / segmentation configs train with less stochastic depth than ImageNet.
LITV2_DENSE_DROP_PATH = {"litv2_s": 0.2, "litv2_m": 0.2, "litv2_b": 0.3}


@register_model
def litv2_s(pretrained: bool = False, **kwargs) -> LITv2:
    return _create_litv2("litv2_s", pretrained, **dict(LITV2_ARCHS["litv2_s"], **kwargs))


@register_model
def litv2_m(pretrained: bool = False, **kwargs) -> LITv2:
    return _create_litv2("litv2_m", pretrained, **dict(LITV2_ARCHS["litv2_m"], **kwargs))


@register_model
def litv2_b(pretrained: bool = False, **kwargs) -> LITv2:
    return _create_litv2("litv2_b", pretrained, **dict(LITV2_ARCHS["litv2_b"], **kwargs))


@register_model
def litv2_nano(pretrained: bool = False, **kwargs) -> LITv2:
    """A small LITv2 (HiLo in the last two stages, DTM between stages) for quick CPU runs; no released weights."""
    return _create_litv2("litv2_nano", pretrained, **dict(LITV2_NANO, **kwargs))
