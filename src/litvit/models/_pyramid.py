"""The skeleton LIT-S/M/B and LITv2 share: patch embedding, then four stages of blocks each followed by deformable
token merging (none after the last), with either a classifier head or per-stage output norms (dense backbones).

A stage's feature is its map *after its blocks and before its DTM* (the official dense backbones' outputs), so the
stage module returns both: the feature and the merged map that feeds the next stage. Maps are channels-last
(B, H, W, C) from the patch embedding to the head; only the features handed out by `forward_intermediates` and the
dense backbones are converted to NCHW.

The trunk owns every keyword the LIT / LITv2 classifiers and backbones have in common (documented once, on
`PyramidTrunk`); a family adds only its block builder (`hilo_blocks`, `relpos_blocks`) and its own keywords. The
stage geometry, per-stage argument checks and timm's factory keywords here serve LIT-Ti too, so that the model files
never import each other.
"""

import contextlib
import functools
import math
from typing import Any, Callable, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from timm.layers import trunc_normal_
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint_seq
from torch import nn

from ..layers._checks import check_image, check_positive_int
from ..layers.batch_slices import run_in_slices, widest_channels
from ..layers.dtm import DeformableTokenMerging
from ..layers.patch_embed import PatchEmbed

# make_block(stage_index, dim, num_heads, drop_path) -> block module
BlockFactory = Callable[[int, int, int, float], nn.Module]


class BlockOptions(NamedTuple):
    """The block keywords LIT-S/M/B and LITv2 share, as the trunk hands them to a family's block builder."""

    num_stages: int
    patch_size: int
    has_msa: Tuple[int, ...]
    mlp_ratio: float
    qkv_bias: bool
    qk_scale: Optional[float]
    drop_rate: float


# make_blocks(options) -> make_block: a family's blocks (HiLo for LITv2, relative-position MSA for LIT-S/M/B)
BlocksBuilder = Callable[[BlockOptions], BlockFactory]


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


def stage_grid_sizes(img_size: Tuple[int, int], patch_size: int, num_stages: int) -> List[Tuple[int, int]]:
    """Token-map side of every stage for an image: ceil(side / patch), then halved (floored) per token merge."""
    h, w = math.ceil(img_size[0] / patch_size), math.ceil(img_size[1] / patch_size)
    sizes = []
    for _ in range(num_stages):
        sizes.append((h, w))
        h, w = h // 2, w // 2
    return sizes


def per_stage(name: str, value: Any, num_stages: Optional[int], what: str, example: Sequence[Any]) -> Tuple[Any, ...]:
    """`value` as a tuple of one entry per stage, else a one-line ValueError naming the argument and the fix (an
    int where a sequence belongs, a wrong length). `num_stages` None: any length >= 1 (`depths` sets the count)."""
    items: Optional[Tuple[Any, ...]] = None
    if not isinstance(value, (str, bytes)):
        with contextlib.suppress(TypeError):
            items = tuple(value)
    if items and (num_stages is None or len(items) == num_stages):
        return items
    count = "" if num_stages is None else f" ({num_stages} stages)"
    hint = f", e.g. {tuple(example)}" if num_stages in (None, len(example)) else ""
    raise ValueError(f"{name} needs one {what} per stage{count}{hint}; got {value!r}")


def dense_norm_indices(task: str, num_stages: int) -> Tuple[int, ...]:
    """Which stage outputs the official dense code normalises: detection 1..3, segmentation all."""
    if task == "det":
        return tuple(range(1, num_stages))
    if task == "seg":
        return tuple(range(num_stages))
    raise ValueError(f"task must be 'det' (detection backbone) or 'seg' (segmentation backbone), got {task!r}")


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
        self.widest_channels = widest_channels(self.blocks)  # sizes the batch slices of large-map inference

    def _blocks_and_merge(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.blocks(x)
        return x, self.downsample(x)

    @torch.jit.unused
    def _in_slices(self, x: torch.Tensor) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """The stage over a large batch a few images at a time in CPU inference (`layers.batch_slices`), or None."""
        out = run_in_slices(self, self._blocks_and_merge, x, self.widest_channels)
        return None if out is None else (out[0], out[1])

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, H, W, C) -> (feature (B, H, W, C), next input (B, H/2, W/2, 2C) or the feature in the last stage)."""
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.blocks, x)
            return x, self.downsample(x)
        if not torch.jit.is_scripting():
            sliced = self._in_slices(x)
            if sliced is not None:
                return sliced
        return self._blocks_and_merge(x)


class PyramidTrunk(nn.Module):
    """Patch embedding + four stages; subclasses add a head or output norms.

    The keywords every LIT-S/M/B and LITv2 classifier and backbone takes are listed here once (defaults: LITv2-S /
    LIT-S); the model classes pass them through `**kwargs`. `make_blocks` builds the family's blocks from them.

    Args:
        patch_size: side of the patch-embedding convolution (stride 4 in the released models).
        in_chans: image channels.
        embed_dim: channels of stage 0; each token merge doubles them.
        depths: blocks per stage; its length is the number of stages.
        num_heads: attention heads per stage.
        has_msa: per stage, 1 for attention blocks, 0 for attention-free (FFN-only) blocks.
        mlp_ratio: FFN hidden width / channels.
        qkv_bias: bias in the query / key / value projections.
        qk_scale: attention scale (default head_dim ** -0.5).
        drop_rate: dropout in the FFN.
        drop_path_rate: stochastic depth of the last block (linear from 0 over all blocks).
        norm_layer: norm of the patch embedding and of the outputs (blocks always use LayerNorm, as officially).
    """

    def __init__(
        self,
        make_blocks: BlocksBuilder,
        patch_size: int = 4,
        in_chans: int = 3,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        has_msa: Sequence[int] = (0, 0, 1, 1),
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: Optional[float] = None,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.2,
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
    ):
        super().__init__()
        check_positive_int("embed_dim", embed_dim)
        depths = per_stage("depths", depths, None, "block count", (2, 2, 6, 2))
        num_heads = per_stage("num_heads", num_heads, len(depths), "head count", (3, 6, 12, 24))
        has_msa = per_stage("has_msa", has_msa, len(depths), "flag (1: attention, 0: none)", (0, 0, 1, 1))
        for d in depths:
            check_positive_int("every entry of depths", d)
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate!r}")
        make_block = make_blocks(
            BlockOptions(len(depths), patch_size, has_msa, mlp_ratio, qkv_bias, qk_scale, drop_rate)
        )
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
    """Dense backbone of the official detection (`task='det'`: output norms `norm{i}` on stages 1-3) and
    segmentation (`task='seg'`: stages 0-3) code: four NCHW maps at strides 4, 8, 16, 32, any input size."""

    def __init__(
        self,
        make_blocks: BlocksBuilder,
        task: str = "det",
        out_indices: Sequence[int] = (0, 1, 2, 3),
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
        **kwargs,
    ):
        dense_norm_indices(task, 1)  # a bad task fails before anything is built
        super().__init__(make_blocks, norm_layer=norm_layer, **kwargs)
        for i in out_indices:
            if not 0 <= i < self.num_stages:
                raise ValueError(f"out_indices must be in 0..{self.num_stages - 1}, got {i}")
        self.task = task
        self.out_indices = tuple(out_indices)
        self.norm_indices = dense_norm_indices(task, self.num_stages)
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
        make_blocks: BlocksBuilder,
        num_classes: int = 1000,
        global_pool: str = "avg",
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
        **kwargs,
    ):
        super().__init__(make_blocks, norm_layer=norm_layer, **kwargs)
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

    @torch.jit.ignore
    def flops(self, img_size: Union[int, Sequence[int], None] = None) -> int:
        """The official `model.flops()` count (MACs) at `img_size` (default: the model's)."""
        from ..flops import official_flops

        return official_flops(self, img_size)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == "avg":
            x = x.mean(dim=(1, 2))  # average over all tokens of (B, H, W, C)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
