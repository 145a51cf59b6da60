"""Pre-norm residual blocks shared by LIT, LIT-Ti and LITv2 (attention and FFN are passed in)."""

from typing import Callable

import torch
from timm.layers import DropPath
from torch import nn


class MLPBlock(nn.Module):
    """`x + DropPath(ffn(norm2(x)))`: the attention-free block of the early stages ("less attention").

    The norm is called `norm2` (there is no `norm1`) to keep the official checkpoint keys.
    """

    def __init__(
        self, dim: int, mlp: nn.Module, drop_path: float = 0.0, norm_layer: Callable[[int], nn.Module] = nn.LayerNorm
    ):
        super().__init__()
        self.dim = dim
        self.norm2 = norm_layer(dim)
        self.mlp = mlp
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def flops(self, H: int, W: int) -> int:
        """MACs on an H x W map, official rule: C per token for the norm, plus the FFN's own count."""
        return self.dim * H * W + _sub_flops(self.mlp, H, W)


class Block(nn.Module):
    """`x + DropPath(attn(norm1(x)))`, then `x + DropPath(ffn(norm2(x)))`, one drop-path rate for both."""

    def __init__(
        self,
        dim: int,
        attn: nn.Module,
        mlp: nn.Module,
        drop_path: float = 0.0,
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
    ):
        super().__init__()
        self.dim = dim
        self.norm1 = norm_layer(dim)
        self.attn = attn
        self.norm2 = norm_layer(dim)
        self.mlp = mlp
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def flops(self, H: int, W: int) -> int:
        """MACs on an H x W map, official rule: C per token for each norm, plus the attention's and FFN's counts."""
        return 2 * self.dim * H * W + _sub_flops(self.attn, H, W) + _sub_flops(self.mlp, H, W)


def _sub_flops(module: nn.Module, H: int, W: int) -> int:
    """`module.flops(H, W)`, or a TypeError naming the module that has no count (a custom attention or FFN)."""
    count = getattr(module, "flops", None)
    if count is None:
        raise TypeError(f"no official count for {type(module).__name__}: give it a flops(H, W) method")
    return int(count(H, W))
