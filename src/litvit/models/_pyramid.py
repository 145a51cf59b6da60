"""The skeleton LIT-S/M/B and LITv2 share: patch embedding, then four stages of blocks each followed by deformable
token merging (none after the last), with either a classifier head or per-stage output norms (dense backbones).

A stage's feature is its map *after its blocks and before its DTM* (the official dense backbones' outputs), so the
stage module returns both: the feature and the merged map that feeds the next stage. Maps are channels-last
(B, H, W, C) from the patch embedding to the head; only the features handed out by `forward_intermediates` and the
dense backbones are converted to NCHW.
"""

import contextlib
import functools
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
from timm.layers import trunc_normal_
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint_seq
from torch import nn

from ..layers._checks import check_image, check_positive_int
from ..layers.dtm import DeformableTokenMerging
from ..layers.patch_embed import PatchEmbed

# make_block(stage_index, dim, num_heads, drop_path) -> block module
BlockFactory = Callable[[int, int, int, float], nn.Module]


def to_2tuple_size(img_size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(img_size, int):
        return (img_size, img_size)
    size = tuple(int(s) for s in img_size)
    if len(size) != 2:
        raise ValueError(f"img_size must be an int or (H, W), got {img_size!r}")
    return size  # type: ignore[return-value]


def init_linear_and_norm(module: nn.Module) -> None:
    """Official init: Linear weights trunc-normal(0.02) cut at +-2, zero biases; LayerNorm 1 / 0."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def min_input_size(patch_size: int, num_merges: int) -> int:
    """Smallest image side that leaves at least a 2x2 map before every 2x2 token merge."""
    return patch_size * (2**num_merges - 1) + 1


def factory_kwargs(init: Callable) -> Callable:
    """Give a model `__init__` timm's `device` / `dtype` factory keywords: the model is built under that default
    device (so `device='meta'` allocates nothing) and then cast to `dtype`."""

    @functools.wraps(init)
    def wrapper(self, *args, device=None, dtype=None, **kwargs):
        with torch.device(device) if device is not None else contextlib.nullcontext():
            init(self, *args, **kwargs)
        if dtype is not None:
            self.to(dtype=dtype)

    return wrapper


def device_dtype(module: nn.Module) -> dict:
    """`device` / `dtype` of a module's parameters, for building a new sub-module that matches them."""
    param = next(module.parameters(), None)
    return {} if param is None else dict(device=param.device, dtype=param.dtype)


def new_head(model: nn.Module, num_features: int, num_classes: int) -> nn.Module:
    """A freshly initialised classifier (Identity for 0 classes) on the model's device / dtype and train mode."""
    head = nn.Linear(num_features, num_classes, **device_dtype(model)) if num_classes > 0 else nn.Identity()
    if num_classes > 0:
        init_linear_and_norm(head)
    return head.train(model.training)


class Stage(nn.Module):
    """`layers.i`: blocks, then (except in the last stage) a deformable token merge."""

    def __init__(self, blocks: List[nn.Module], downsample: Optional[nn.Module]):
        super().__init__()
        self.blocks = nn.Sequential(*blocks)
        self.downsample = downsample if downsample is not None else nn.Identity()
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, H, W, C) -> (feature (B, H, W, C), next input (B, H/2, W/2, 2C) or the feature in the last stage)."""
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.blocks, x)
        else:
            x = self.blocks(x)
        return x, self.downsample(x)


class PyramidTrunk(nn.Module):
    """Patch embedding + four stages; subclasses add a head or output norms."""

    def __init__(
        self,
        make_block: BlockFactory,
        patch_size: int = 4,
        in_chans: int = 3,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        drop_path_rate: float = 0.0,
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
    ):
        super().__init__()
        check_positive_int("embed_dim", embed_dim)
        if len(depths) != len(num_heads):
            raise ValueError(f"depths ({list(depths)}) and num_heads ({list(num_heads)}) must have the same length")
        for d in depths:
            check_positive_int("every entry of depths", d)
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate!r}")
        self.in_chans = in_chans
        self.patch_size = patch_size
        self.num_stages = len(depths)
        self.embed_dims = [embed_dim * 2**i for i in range(self.num_stages)]
        self.min_input_size = min_input_size(patch_size, self.num_stages - 1)

        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim, norm_layer=norm_layer)
        self.pos_drop = nn.Identity()  # the official p=0 dropout after the patch embedding (no parameters)

        # Stochastic depth grows linearly over every block of every stage, attention-free ones included.
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        stages: List[nn.Module] = []
        first = 0
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            dim = self.embed_dims[i]
            blocks = [make_block(i, dim, heads, dpr[first + k]) for k in range(depth)]
            last = i == self.num_stages - 1
            stages.append(Stage(blocks, None if last else DeformableTokenMerging(dim, 2 * dim)))
            first += depth
        self.layers = nn.ModuleList(stages)
        self.feature_info = [
            dict(num_chs=self.embed_dims[i], reduction=patch_size * 2**i, module=f"layers.{i}")
            for i in range(self.num_stages)
        ]

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.layers:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(
            stem=r"^patch_embed",
            blocks=r"^layers\.(\d+)"
            if coarse
            else [(r"^layers\.(\d+)\.blocks\.(\d+)", None), (r"^layers\.(\d+)\.downsample", (99999,))],
        )

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        check_image(x, self.in_chans, self.min_input_size)
        return self.pos_drop(self.patch_embed(x))


class PyramidBackbone(PyramidTrunk):
    """Dense backbone: four NCHW maps at strides 4, 8, 16, 32, stage i normed by `norm{i}` if i is in norm_indices."""

    def __init__(
        self,
        make_block: BlockFactory,
        norm_indices: Sequence[int] = (1, 2, 3),
        out_indices: Sequence[int] = (0, 1, 2, 3),
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
        **kwargs,
    ):
        super().__init__(make_block, norm_layer=norm_layer, **kwargs)
        for i in list(norm_indices) + list(out_indices):
            if not 0 <= i < self.num_stages:
                raise ValueError(f"stage indices must be in 0..{self.num_stages - 1}, got {i}")
        self.out_indices = tuple(out_indices)
        self.norm_indices = tuple(norm_indices)
        for i in range(self.num_stages):  # norm{i}: the official keys; Identity (no keys) where a stage is not normed
            self.add_module(f"norm{i}", norm_layer(self.embed_dims[i]) if i in self.norm_indices else nn.Identity())

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = self.stem(x)
        outs: List[torch.Tensor] = []
        for i, stage in enumerate(self.layers):
            feat, x = stage(x)
            if i in self.out_indices:
                feat = getattr(self, f"norm{i}")(feat)
                outs.append(feat.permute(0, 3, 1, 2).contiguous())  # (B, H, W, C) -> (B, C, H, W)
        return outs


class PyramidClassifier(PyramidTrunk):
    """Classifier: final LayerNorm, average over all tokens, linear head. Full timm model API."""

    def __init__(
        self,
        make_block: BlockFactory,
        num_classes: int = 1000,
        global_pool: str = "avg",
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
        **kwargs,
    ):
        super().__init__(make_block, norm_layer=norm_layer, **kwargs)
        if global_pool not in ("avg", ""):
            raise ValueError(f"global_pool must be 'avg' or '' (no pooling), got {global_pool!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an integer >= 0 (0 = no head), got {num_classes!r}")
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.num_features = self.head_hidden_size = self.embed_dims[-1]
        self.output_fmt = "NHWC"
        self.norm = norm_layer(self.num_features)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        if global_pool is not None:
            if global_pool not in ("avg", ""):
                raise ValueError(f"global_pool must be 'avg' or '', got {global_pool!r}")
            self.global_pool = global_pool
        self.num_classes = num_classes
        self.head = new_head(self, self.num_features, num_classes)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: Optional[Union[int, List[int]]] = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Stage features (after each stage's blocks, before its token merge) as NCHW or NHWC maps.

        Args:
            indices: take the last n stages if an int, all if None, else the listed stage indices.
            norm: apply the final norm to the last stage's feature, if it is taken.
            stop_early: stop after the last requested stage (then the returned final map is that stage's).
            output_fmt: 'NCHW' or 'NHWC'.
            intermediates_only: return only the list of features.
        """
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt}")
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        intermediates: List[torch.Tensor] = []
        x = self.stem(x)
        last = len(self.layers) - 1
        feat = x
        if torch.jit.is_scripting() or not stop_early:  # noqa: SIM108 - TorchScript cannot slice a ModuleList
            stages = self.layers
        else:
            stages = self.layers[: max_index + 1]
        for i, stage in enumerate(stages):
            feat, x = stage(x)
            if i in take_indices:
                out = self.norm(feat) if norm and i == last else feat
                intermediates.append(out.permute(0, 3, 1, 2).contiguous() if output_fmt == "NCHW" else out)
        if intermediates_only:
            return intermediates
        return self.norm(feat) if not stop_early or max_index == last else feat, intermediates

    def prune_intermediate_layers(
        self,
        indices: Union[int, List[int]] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> List[int]:
        """Drop the stages after the last requested one (and optionally the norm / head)."""
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        prune_end = max_index < len(self.layers) - 1
        self.layers = self.layers[: max_index + 1]
        self.layers[-1].downsample = nn.Identity()
        if prune_norm or prune_end:
            self.norm = nn.Identity()  # sized for the last stage only
        if prune_end:
            self.num_features = self.head_hidden_size = self.embed_dims[max_index]
        if prune_head or prune_end:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, C, H, W) -> normed last-stage map (B, H/32, W/32, num_features)."""
        x = self.stem(x)
        for stage in self.layers:
            feat, x = stage(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == "avg":
            x = x.mean(dim=(1, 2))  # average over all tokens of (B, H, W, C)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
