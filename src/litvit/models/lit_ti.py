"""LIT-Ti: the tiny LIT of "Less is More: Pay Less Attention in Vision Transformers" (AAAI 2022), built on the PVT
layout: four stages each opened by a patch embedding (a strided conv, then deformable token merging), absolute
position embeddings in every stage, plain ViT attention in the last two stages and a class token in the last.

Position embeddings are stored for the `img_size` grid; on another map size they are resized bilinearly, the rule
of the official dense backbone (`LITTiBackbone`).
"""

import math
from functools import partial
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_function, trunc_normal_
from timm.models import generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint_seq
from torch import nn

from ..checkpoint import unwrap_state_dict
from ..layers._checks import check_image, check_positive_int
from ..layers._shapes import is_symbolic
from ..layers.attention import Attention
from ..layers.block import Block, MLPBlock
from ..layers.dtm import DeformableTokenMerging
from ..layers.ffn import Mlp
from ..layers.patch_embed import PatchEmbed
from ..options import to_2tuple
from ._helpers import LIT_PAPER, LIT_RELEASES, build_model, cfg
from ._loading import backbone_weights, load_into
from ._pyramid import (
    factory_kwargs,
    init_linear_and_norm,
    min_input_size,
    new_head,
    per_stage,
    stage_grid_sizes,
)

__all__ = ["LITTi", "LITTiBackbone"]


@register_notrace_function
def resize_pos_embed(pos: torch.Tensor, grid: Tuple[int, int], height: int, width: int) -> torch.Tensor:
    """(1, gh * gw, C) embedding stored for a gh x gw grid -> (1, H, W, C), bilinearly resized if the size differs.

    Traced with symbolic sizes it always resizes (to its own size that is the identity), so an exported graph is
    right at every size rather than only at those that took the same branch at trace time.
    """
    C = pos.shape[-1]
    pos = pos.reshape(1, grid[0], grid[1], C)
    symbolic = False if torch.jit.is_scripting() else is_symbolic(height, width)
    if not symbolic and (height, width) == grid:
        return pos
    pos = F.interpolate(pos.permute(0, 3, 1, 2), size=(height, width), mode="bilinear", align_corners=False)
    return pos.permute(0, 2, 3, 1)  # (1, C, H, W) -> (1, H, W, C)


class _LITTiTrunk(nn.Module):
    """Stages of LIT-Ti without the class token and head."""

    def __init__(
        self,
        img_size: Union[int, Sequence[int]] = 224,
        patch_size: int = 4,
        in_chans: int = 3,
        embed_dims: Sequence[int] = (64, 128, 320, 512),
        num_heads: Sequence[int] = (1, 2, 5, 8),
        mlp_ratios: Sequence[float] = (8, 8, 4, 4),
        depths: Sequence[int] = (3, 4, 6, 3),
        has_msa: Sequence[int] = (0, 0, 1, 1),
        qkv_bias: bool = True,
        qk_scale: Optional[float] = None,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
    ):
        super().__init__()
        n = 4  # LIT-Ti's layout (flat per-stage module names, a class token in stage 4) has exactly four stages
        depths = per_stage("depths", depths, n, "block count", (3, 4, 6, 3))
        embed_dims = per_stage("embed_dims", embed_dims, n, "channel count", (64, 128, 320, 512))
        num_heads = per_stage("num_heads", num_heads, n, "head count", (1, 2, 5, 8))
        mlp_ratios = per_stage("mlp_ratios", mlp_ratios, n, "FFN ratio", (8, 8, 4, 4))
        has_msa = per_stage("has_msa", has_msa, n, "flag (1: attention, 0: none)", (0, 0, 1, 1))
        for d in depths:
            check_positive_int("every entry of depths", d)
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate!r}")
        self.img_size = to_2tuple(img_size)
        self.in_chans = in_chans
        self.embed_dims = list(embed_dims)
        self.num_stages = n
        self.min_input_size = min_input_size(patch_size, n - 1)
        self.grid_sizes = stage_grid_sizes(self.img_size, patch_size, n)
        norm_layer = partial(nn.LayerNorm, eps=1e-6)

        for i, (gh, gw) in enumerate(self.grid_sizes):  # pos_embed4 has a (class-token) row 0 before the grid
            extra = 1 if i == n - 1 else 0
            self.register_parameter(f"pos_embed{i + 1}", nn.Parameter(torch.zeros(1, gh * gw + extra, embed_dims[i])))

        dpr = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        first = 0
        for i in range(n):
            if i == 0:
                embed = PatchEmbed(patch_size, in_chans, embed_dims[0], norm_layer=nn.LayerNorm)  # eps 1e-5 here
            else:
                embed = DeformableTokenMerging(embed_dims[i - 1], embed_dims[i])
            self.add_module(f"patch_embed{i + 1}", embed)
            self.add_module(f"pos_drop{i + 1}", nn.Dropout(drop_rate))
        for i in range(n):
            dim = embed_dims[i]
            blocks = []
            for k in range(depths[i]):
                mlp = Mlp(dim, int(dim * mlp_ratios[i]), drop=drop_rate)
                if has_msa[i]:
                    attn = Attention(dim, num_heads[i], qkv_bias=qkv_bias, qk_scale=qk_scale)
                    blocks.append(Block(dim, attn, mlp, dpr[first + k], norm_layer=norm_layer))
                else:
                    blocks.append(MLPBlock(dim, mlp, dpr[first + k], norm_layer=norm_layer))
            self.add_module(f"block{i + 1}", nn.Sequential(*blocks))
            first += depths[i]
        self.grad_checkpointing = False
        self.feature_info = [
            dict(num_chs=embed_dims[i], reduction=patch_size * 2**i, module=f"block{i + 1}") for i in range(n)
        ]

    def _init(self) -> None:
        for pos in (self.pos_embed1, self.pos_embed2, self.pos_embed3, self.pos_embed4):
            trunc_normal_(pos, std=0.02)
        self.apply(init_linear_and_norm)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(
            stem=r"^cls_token|^pos_embed|^patch_embed1",
            blocks=[(r"^block(\d+)\.(\d+)", None), (r"^patch_embed(\d+)", (0,))],
        )

    # Stage modules keep the official flat names (patch_embed1, pos_embed1, pos_drop1, block1, ...); the explicit
    # branches below are how TorchScript can index them by stage.
    def _embed(self, i: int, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Stage i's patch embedding of x, and the grid rows of its position embedding."""
        if i == 0:
            return self.patch_embed1(x), self.pos_embed1
        if i == 1:
            return self.patch_embed2(x), self.pos_embed2
        if i == 2:
            return self.patch_embed3(x), self.pos_embed3
        return self.patch_embed4(x), self.pos_embed4[:, 1:]  # row 0 belongs to the class token

    def _blocks(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Position dropout and blocks of stage i."""
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(getattr(self, f"block{i + 1}"), getattr(self, f"pos_drop{i + 1}")(x))
        if i == 0:
            return self.block1(self.pos_drop1(x))
        if i == 1:
            return self.block2(self.pos_drop2(x))
        if i == 2:
            return self.block3(self.pos_drop3(x))
        return self.block4(self.pos_drop4(x))

    def _grid_stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Stages 1-3 (and 4 without a class token): embed, add the position embedding, blocks. Maps (B, H, W, C)."""
        x, pos = self._embed(i, x)
        x = x + resize_pos_embed(pos, self.grid_sizes[i], x.shape[1], x.shape[2])
        return self._blocks(i, x)


class LITTi(_LITTiTrunk):
    """LIT-Ti image classifier (timm model API); the class token of stage 4 feeds the head."""

    @factory_kwargs
    def __init__(self, num_classes: int = 1000, global_pool: str = "token", **kwargs):
        super().__init__(**kwargs)
        if global_pool not in ("token", "avg", ""):
            raise ValueError(f"global_pool must be 'token', 'avg' or '', got {global_pool!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an integer >= 0 (0 = no head), got {num_classes!r}")
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.num_prefix_tokens = 1
        self.output_fmt = "NLC"
        self.num_features = self.head_hidden_size = self.embed_dims[-1]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, self.num_features))
        self.norm = nn.LayerNorm(self.num_features, eps=1e-6)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        trunc_normal_(self.cls_token, std=0.02)
        self._init()

    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        return {"cls_token"}

    @torch.jit.ignore
    def load_pretrained(self, checkpoint_path: str) -> None:
        """Load an official LIT-Ti file or a litvit checkpoint (timm's custom-load hook; see models._loading)."""
        load_into(self, checkpoint_path, checkpoint_filter_fn)

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        if global_pool is not None:
            if global_pool not in ("token", "avg", ""):
                raise ValueError(f"global_pool must be 'token', 'avg' or '', got {global_pool!r}")
            self.global_pool = global_pool
        self.num_classes = num_classes
        self.head = new_head(self, self.num_features, num_classes)

    def _last_stage(self, x: torch.Tensor) -> torch.Tensor:
        """Stage 4 with the class token: (B, H, W, C) map of stage 3 -> (B, 1 + N, C) tokens."""
        last = self.num_stages - 1
        x, grid_pos = self._embed(last, x)
        B, H, W, C = x.shape
        grid_pos = resize_pos_embed(grid_pos, self.grid_sizes[last], H, W).reshape(1, H * W, C)
        x = torch.cat([self.cls_token.expand(B, -1, -1), x.reshape(B, H * W, C)], dim=1)  # (B, 1 + N, C)
        x = x + torch.cat([self.pos_embed4[:, :1], grid_pos], dim=1)
        return self._blocks(last, x)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: Optional[Union[int, List[int]]] = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Stage maps (after each stage's blocks) as NCHW or NHWC; the class token is left out of stage 4's map."""
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt}")
        take_indices, max_index = feature_take_indices(self.num_stages, indices)
        check_image(x, self.in_chans, self.min_input_size)
        intermediates: List[torch.Tensor] = []
        last = self.num_stages - 1
        for i in range(last):
            if stop_early and i > max_index:
                break
            x = self._grid_stage(i, x)
            if i in take_indices:
                intermediates.append(x.permute(0, 3, 1, 2).contiguous() if output_fmt == "NCHW" else x)
        if stop_early and max_index < last:
            return intermediates if intermediates_only else (x, intermediates)
        if self.cls_token is None:
            x = self._grid_stage(last, x)
            if last in take_indices:
                feat = self.norm(x) if norm else x
                intermediates.append(feat.permute(0, 3, 1, 2).contiguous() if output_fmt == "NCHW" else feat)
            if intermediates_only:
                return intermediates
            return self.norm(x), intermediates
        B, H, W, C = x.shape[0], x.shape[1] // 2, x.shape[2] // 2, self.num_features
        x = self._last_stage(x)
        if last in take_indices:
            feat = self.norm(x) if norm else x
            feat = feat[:, 1:].reshape(B, H, W, C)
            intermediates.append(feat.permute(0, 3, 1, 2).contiguous() if output_fmt == "NCHW" else feat)
        if intermediates_only:
            return intermediates
        return self.norm(x), intermediates

    def prune_intermediate_layers(
        self,
        indices: Union[int, List[int]] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> List[int]:
        take_indices, max_index = feature_take_indices(self.num_stages, indices)
        prune_end = max_index < self.num_stages - 1
        if prune_end:
            # the class token only enters in stage 4: without it the model ends in a plain (B, H, W, C) map
            for j in range(max_index + 1, self.num_stages):
                setattr(self, f"patch_embed{j + 1}", nn.Identity())
                setattr(self, f"block{j + 1}", nn.Sequential())
                setattr(self, f"pos_embed{j + 1}", None)
            self.cls_token = None
            self.num_prefix_tokens = 0
            self.num_stages = max_index + 1
            self.num_features = self.head_hidden_size = self.embed_dims[max_index]
        if prune_norm or prune_end:
            self.norm = nn.Identity()
        if prune_head or prune_end:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, C, H, W) -> normed tokens (B, 1 + N, C) of stage 4, class token first."""
        check_image(x, self.in_chans, self.min_input_size)
        for i in range(self.num_stages - 1):
            x = self._grid_stage(i, x)
        if self.cls_token is None:
            return self.norm(self._grid_stage(self.num_stages - 1, x))
        return self.norm(self._last_stage(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == "token":
            x = x[:, 0]
        elif self.global_pool == "avg":
            x = x.mean(dim=(1, 2)) if x.dim() == 4 else x[:, self.num_prefix_tokens :].mean(dim=1)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class LITTiBackbone(_LITTiTrunk):
    """LIT-Ti backbone of the official detection / segmentation code (identical for both): the NCHW map of every
    stage after its blocks, no output norms, no class token (row 0 of `pos_embed4` is kept but unused)."""

    @factory_kwargs
    def __init__(self, out_indices: Sequence[int] = (0, 1, 2, 3), **kwargs):
        super().__init__(**kwargs)
        for i in out_indices:
            if not 0 <= i < self.num_stages:
                raise ValueError(f"out_indices must be in 0..{self.num_stages - 1}, got {i}")
        self.out_indices = tuple(out_indices)
        self._init()

    def load_pretrained(self, checkpoint_path: str) -> None:
        """Load ImageNet weights (official LIT-Ti or litvit) or an official mmdet / mmseg checkpoint."""
        load_into(self, checkpoint_path, checkpoint_filter_fn)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        check_image(x, self.in_chans, self.min_input_size)
        outs: List[torch.Tensor] = []
        for i in range(self.num_stages):
            x = self._grid_stage(i, x)
            if i in self.out_indices:
                outs.append(x.permute(0, 3, 1, 2).contiguous())  # (B, H, W, C) -> (B, C, H, W)
        return outs


def checkpoint_filter_fn(state_dict: Dict[str, Any], model: nn.Module) -> Dict[str, torch.Tensor]:
    """Official LIT-Ti files (a bare state_dict, or under 'model') -> this model's state_dict.

    Position embeddings stored for another grid are resized bilinearly to the model's (row 0 of `pos_embed4`, the
    class token's, is kept). For the dense backbone, mmdet / mmseg files lose their `backbone.` prefix and ImageNet
    files their class token, final norm and head.
    """
    sd = unwrap_state_dict(state_dict)
    if isinstance(model, LITTiBackbone):
        sd = backbone_weights(sd, drop=("head.", "norm.", "cls_token"))
    own = model.state_dict()
    for i, grid in enumerate(model.grid_sizes):
        k = f"pos_embed{i + 1}"
        if k not in sd or k not in own or sd[k].shape == own[k].shape or sd[k].shape[-1] != own[k].shape[-1]:
            continue
        extra = 1 if i == len(model.grid_sizes) - 1 else 0
        n = sd[k].shape[1] - extra
        side = math.isqrt(n)
        if side * side != n:
            continue
        resized = resize_pos_embed(sd[k][:, extra:], (side, side), grid[0], grid[1]).reshape(1, -1, sd[k].shape[-1])
        sd[k] = torch.cat([sd[k][:, :extra], resized], dim=1)
    return sd


default_cfgs = generate_default_cfgs(
    {
        "lit_ti.in1k": cfg(
            url=LIT_RELEASES + "v1.0/lit_ti.pth", paper=LIT_PAPER, first_conv="patch_embed1.proj", pool_size=None
        ),
    }
)

LIT_TI_ARCH: Dict[str, Any] = dict(
    embed_dims=(64, 128, 320, 512),
    num_heads=(1, 2, 5, 8),
    mlp_ratios=(8, 8, 4, 4),
    depths=(3, 4, 6, 3),
    drop_path_rate=0.1,
)


@register_model
def lit_ti(pretrained: bool = False, **kwargs) -> LITTi:
    return build_model(LITTi, "lit_ti", pretrained, checkpoint_filter_fn, **dict(LIT_TI_ARCH, **kwargs))
