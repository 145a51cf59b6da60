"""LITv2 as the official classification code runs it, for `litvit bench`'s "the official code" rows.

The official repository cannot run on current PyTorch or on a CPU (its deformable conv is a CUDA-only extension that
no longer builds, spec/ARCHITECTURE.md §11), so the benchmark compares litvit with the official *forward*, written
here from spec §2-4 over the same modules and weights: tokens (B, N, C) between layers; the FFN's fc1 output turned
into an NCHW map by transpose + view for the depthwise conv, then GELU as its own op; HiLo with explicit
`q @ k^T`, softmax and `@ v` (`HiLoMatmul`); DTM on a contiguous NCHW copy through `torchvision.ops.deform_conv2d`
(the official kernel's arithmetic); the head's mean through AdaptiveAvgPool1d. It computes the same function as
litvit's LITv2 (tests: 1e-5), so the ratio of the two is the price of the official code's layout and kernels.

`NAME:official=ffn,dtm` runs only the named parts (ffn, hilo, dtm) the official way and the others as litvit does,
so that a gap to the official code can be put down to a part on the machine it shows on (a GPU, say).
"""

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import deform_conv2d

from .attention_layers import HiLoMatmul

__all__ = [
    "OFFICIAL_PARTS",
    "OFFICIAL_SUFFIX",
    "OfficialStyleLITv2",
    "is_official_style",
    "official_base",
    "official_parts",
    "official_style",
]

OFFICIAL_SUFFIX = ":official"  # `litvit bench litv2_s:official`: that LITv2 run as the official code runs it
OFFICIAL_PARTS = ("ffn", "hilo", "dtm")  # `litv2_s:official=dtm`: only these run the official way


def is_official_style(name: str) -> bool:
    return OFFICIAL_SUFFIX in name


def official_base(name: str) -> str:
    """'litv2_s:official' (or 'litv2_s:official=dtm') -> 'litv2_s', the model the official forward runs; other names
    unchanged."""
    return name.partition(OFFICIAL_SUFFIX)[0]


def official_parts(name: str) -> Tuple[str, ...]:
    """The parts `name` runs the official way: 'litv2_s:official' -> all, 'litv2_s:official=dtm,ffn' -> ('dtm',
    'ffn'); a ValueError names an unknown part."""
    _, suffix, rest = name.partition(OFFICIAL_SUFFIX)
    if not suffix or not rest:
        return OFFICIAL_PARTS if suffix else ()
    parts = tuple(rest.removeprefix("=").split(","))
    unknown = [p for p in parts if p not in OFFICIAL_PARTS]
    if not rest.startswith("=") or unknown or not parts:
        raise ValueError(
            f"{name!r}: write NAME{OFFICIAL_SUFFIX}=PART[,PART] with parts from {', '.join(OFFICIAL_PARTS)}"
        )
    return parts


def _ffn(mlp: nn.Module, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Official DWMlp: fc1 -> tokens to NCHW by transpose + view -> depthwise conv -> back to tokens -> GELU -> fc2."""
    B, N, _ = x.shape
    x = F.linear(x, mlp.fc1.weight, mlp.fc1.bias)  # (B, N, 4C)
    x = x.transpose(1, 2).view(B, -1, H, W)  # (B, N, 4C) -> (B, 4C, H, W)
    x = mlp.dwconv.dwconv(x).flatten(2).transpose(1, 2)  # (B, 4C, H, W) -> (B, N, 4C)
    x = F.gelu(x)
    return F.linear(x, mlp.fc2.weight, mlp.fc2.bias)


def _dtm(dtm: nn.Module, x: torch.Tensor, H: int, W: int) -> Tuple[torch.Tensor, int, int]:
    """Official DTM: tokens -> contiguous NCHW -> offset conv -> deformable conv -> BatchNorm -> GELU -> tokens."""
    B, _, C = x.shape
    x = x.reshape(B, H, W, C).permute(0, 3, 1, 2).contiguous()  # (B, N, C) -> (B, C, H, W)
    conv = dtm.dconv
    offset = conv.conv_offset(x)
    with torch.autocast(x.device.type, enabled=False):  # in fp32 under autocast, as the official AMP code runs it
        w, b = conv.weight.float(), conv.bias.float()
        x = deform_conv2d(x.float(), offset.float(), w, b, stride=conv.stride, padding=conv.padding).to(x.dtype)
    x = F.gelu(dtm.norm_layer(x))
    _, _, H, W = x.shape
    return x.flatten(2).transpose(1, 2), H, W  # (B, C', H', W') -> (B, N', C')


def _official_hilo(hilo: nn.Module) -> HiLoMatmul:
    """`HiLoMatmul` with the hyper-parameters of a litvit HiLo and its very parameters (shared, not copied), in
    plain `nn.Linear` modules: litvit's own linears would bring their bf16 fast path into the official rows."""
    ref = HiLoMatmul(hilo.dim, hilo.num_heads, hilo.window_size, hilo.alpha, qk_scale=hilo.scale)
    for name, child in hilo.named_children():
        plain = getattr(ref, name, None)
        if isinstance(plain, nn.Linear):
            plain.weight, plain.bias = child.weight, child.bias
    return ref


class OfficialStyleLITv2(nn.Module):
    """A litvit `LITv2` classifier (its modules and weights, shared) run the way the official code runs it: the
    `parts` named (all by default) the official way, the others through litvit's own modules."""

    def __init__(self, model: nn.Module, parts: Tuple[str, ...] = OFFICIAL_PARTS):
        super().__init__()
        self.model = model
        self.parts = tuple(parts)
        # HiLo in the official layout, over the same linear layers (shared, so parameters are counted once)
        self.hilo = nn.ModuleDict(
            {
                f"{i}_{j}": _official_hilo(block.attn) if "hilo" in self.parts else block.attn
                for i, stage in enumerate(model.layers)
                for j, block in enumerate(stage.blocks)
                if hasattr(block, "attn")
            }
        )

    def _ffn(self, block: nn.Module, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        if "ffn" in self.parts:
            return _ffn(block.mlp, x, H, W)
        B, N, C = x.shape
        return block.mlp(x.reshape(B, H, W, C)).reshape(B, N, C)  # litvit's FFN on the (B, H, W, C) view

    def _dtm(self, dtm: nn.Module, x: torch.Tensor, H: int, W: int) -> Tuple[torch.Tensor, int, int]:
        if "dtm" in self.parts:
            return _dtm(dtm, x, H, W)
        B, _, C = x.shape
        x = dtm(x.reshape(B, H, W, C))  # litvit's DTM: (B, H, W, C) -> (B, H', W', C')
        return x.flatten(1, 2), x.shape[1], x.shape[2]  # (B, H', W', C') -> (B, N', C')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = m.patch_embed.proj(x)  # (B, 3, H, W) -> (B, C, H/4, W/4)
        _, _, H, W = x.shape
        x = m.patch_embed.norm(x.flatten(2).transpose(1, 2))  # (B, C, H, W) -> (B, N, C)
        for i, stage in enumerate(m.layers):
            for j, block in enumerate(stage.blocks):
                if hasattr(block, "attn"):
                    B, N, C = x.shape
                    attn = self.hilo[f"{i}_{j}"](block.norm1(x).reshape(B, H, W, C))  # tokens as a (B, H, W, C) view
                    x = x + block.drop_path(attn.reshape(B, N, C))
                x = x + block.drop_path(self._ffn(block, block.norm2(x), H, W))
            if not isinstance(stage.downsample, nn.Identity):
                x, H, W = self._dtm(stage.downsample, x, H, W)
        x = m.norm(x)
        x = F.adaptive_avg_pool1d(x.transpose(1, 2), 1).flatten(1)  # (B, N, C) -> (B, C)
        return m.head(x)


def official_style(model: nn.Module, parts: Tuple[str, ...] = OFFICIAL_PARTS) -> OfficialStyleLITv2:
    """`model` (a litvit LITv2 classifier) wrapped to run as the official code does (only `parts` of it); raises for
    other models."""
    from ..models.litv2 import LITv2

    if not isinstance(model, LITv2):
        raise TypeError(f"the official-code rows exist for LITv2 classifiers only, not {type(model).__name__}")
    return OfficialStyleLITv2(model, parts).train(model.training)
