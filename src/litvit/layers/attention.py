"""Global multi-head self-attention: LIT-Ti's plain ViT attention and LIT-S/M/B's relative-position attention."""

import functools
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_module
from torch import nn

from ._checks import check_floating, check_heads, check_map, check_positive_int
from ._shapes import is_symbolic, is_tracing


class Attention(nn.Module):
    """ViT multi-head self-attention over all tokens of a (B, ..., C) input (a map or a token sequence).

    `softmax(q k^T * scale) v` through `F.scaled_dot_product_attention`; the scale is applied after the product,
    as in the official LIT-Ti.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, qk_scale: Optional[float] = None):
        super().__init__()
        check_heads(dim, num_heads)
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = float(qk_scale) if qk_scale else self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_floating(x, "Attention input")
        shape = x.shape
        B = shape[0]
        # (B, ..., C) -> (B, N, C); flatten, not reshape(B, -1, C): -1 is ambiguous for an empty batch
        x = x.flatten(1, -2)
        qkv = self.qkv(x).reshape(B, x.shape[1], 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, h, N, d)
        o = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        o = o.transpose(1, 2).reshape(shape)  # (B, h, N, d) -> (B, ..., C)
        return self.proj(o)

    def flops(self, H: int, W: int) -> int:
        """MACs on N = H * W tokens by the official rule of LIT's attention (LIT-Ti's code base has no count):
        qkv, q k^T, attn v and proj; softmax and biases not counted. Add a class token to H * W yourself."""
        return _global_attention_flops(H * W, self.dim, self.num_heads, self.head_dim)


def _global_attention_flops(n: int, dim: int, heads: int, head_dim: int) -> int:
    """Official count of global MSA over n tokens: qkv projection, the two products over all n x n pairs, proj."""
    return n * dim * 3 * dim + 2 * heads * n * head_dim * n + n * dim * dim


def relative_position_index(height: int, width: int, device: Optional[torch.device] = None) -> torch.Tensor:
    """(N, N) index into a (2H - 1) x (2W - 1) table of relative offsets, N = H * W, row-major tokens.

    Token p = (y1, x1) and q = (y2, x2) map to (y1 - y2 + H - 1) * (2W - 1) + (x1 - x2 + W - 1).
    """
    ys, xs = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()])  # (2, N)
    rel = coords[:, :, None] - coords[:, None, :]  # (2, N, N)
    return (rel[0] + height - 1) * (2 * width - 1) + (rel[1] + width - 1)


@functools.lru_cache(maxsize=8)
def _cached_flat_index(height: int, width: int, device: str) -> torch.Tensor:
    """`relative_position_index(H, W).flatten()`, built once per (size, device) and shared by every block.

    For a dense map it is large (stage 3 of an 800 x 1216 detection input: 3800^2 entries), and the official code
    rebuilt it in every block of every forward. Built outside inference mode so autograd may use it later.
    """
    with torch.inference_mode(False), torch.no_grad():
        return relative_position_index(height, width, device=torch.device(device)).flatten()


@torch.jit.ignore
def _flat_index(height: int, width: int, device: torch.device) -> torch.Tensor:
    return _cached_flat_index(height, width, str(device))


@register_notrace_module
class RelPosAttention(nn.Module):
    """Global multi-head self-attention with a learned relative-position bias (LIT-S/M/B, stages 3 and 4).

    The bias table holds one value per head for every offset on a `grid_size` = (Rh, Rw) map:
    ((2Rh - 1) * (2Rw - 1), heads). On a map of that size it is gathered with `relative_position_index` (a persistent
    buffer in the classifier checkpoints, `index_buffer=True`). On any other size the table is resized bicubically to
    (2H - 1) x (2W - 1) and gathered with an index built for (H, W), the rule of the official dense backbones (whose
    checkpoints carry no index, `index_buffer=False`). q is scaled before the product, as in the official code.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        grid_size: Tuple[int, int],
        qkv_bias: bool = True,
        qk_scale: Optional[float] = None,
        index_buffer: bool = True,
    ):
        super().__init__()
        check_heads(dim, num_heads)
        check_positive_int("grid_size[0]", grid_size[0])
        check_positive_int("grid_size[1]", grid_size[1])
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = float(qk_scale) if qk_scale else self.head_dim**-0.5
        self.grid_size = (int(grid_size[0]), int(grid_size[1]))
        table_h, table_w = 2 * self.grid_size[0] - 1, 2 * self.grid_size[1] - 1
        self.relative_position_bias_table = nn.Parameter(torch.zeros(table_h * table_w, num_heads))
        # Always present (the table lookup at the reference size uses it); saved only where the official
        # checkpoints carry it.
        index = relative_position_index(self.grid_size[0], self.grid_size[1])
        self.register_buffer("relative_position_index", index, persistent=index_buffer)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def relative_position_bias(self, height: int, width: int) -> torch.Tensor:
        """(heads, N, N) additive attention bias for an H x W map."""
        table = self.relative_position_bias_table
        n = height * width
        # Traced with symbolic sizes, always take the resize path: resizing the table to its own size is the
        # identity (bicubic weights 0, 1, 0, 0), so the graph is right at the reference size and at every other.
        symbolic = False if torch.jit.is_scripting() else is_symbolic(height, width)
        if not symbolic and height == self.grid_size[0] and width == self.grid_size[1]:
            bias = table[self.relative_position_index.flatten()]
        else:
            th, tw = 2 * self.grid_size[0] - 1, 2 * self.grid_size[1] - 1
            # ((2Rh-1)(2Rw-1), h) -> (1, h, 2Rh-1, 2Rw-1) -> resize -> ((2H-1)(2W-1), h)
            grid = table.transpose(0, 1).reshape(1, self.num_heads, th, tw)
            grid = F.interpolate(grid, size=(2 * height - 1, 2 * width - 1), mode="bicubic", align_corners=False)
            table = grid.reshape(self.num_heads, -1).transpose(0, 1)
            if torch.jit.is_scripting() or symbolic or is_tracing():  # graph ops; never a cached fake tensor
                index = relative_position_index(height, width, device=table.device).flatten()
            else:
                index = _flat_index(height, width, table.device)
            bias = table[index]
        return bias.reshape(n, n, self.num_heads).permute(2, 0, 1)  # (N*N, h) -> (h, N, N)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, H, W, C) map -> (B, H, W, C)."""
        check_map(x, self.dim, "RelPosAttention input")
        B, H, W, C = x.shape
        n = H * W
        qkv = self.qkv(x).reshape(B, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, h, N, d)
        bias = self.relative_position_bias(H, W).unsqueeze(0).to(q.dtype)
        # Scale q first, then add the bias: the official order (scale=1 keeps SDPA from scaling again).
        o = F.scaled_dot_product_attention(q * self.scale, k, v, attn_mask=bias, scale=1.0).transpose(1, 2)
        if not torch.jit.is_scripting() and torch.compiler.is_compiling():
            # Traced, the fused kernel's (B, N, h, d)-ordered output lets the reshape below be recorded as a view,
            # which is invalid once an exporter decomposes SDPA into plain ops (ONNX): make the layout explicit.
            o = o.clone(memory_format=torch.contiguous_format)
        o = o.reshape(B, H, W, C)  # (B, N, h, d) -> (B, H, W, C)
        return self.proj(o)

    def flops(self, H: int, W: int) -> int:
        """MACs on an H x W map as the official LIT `flops()` counts them (the relative-position bias is free)."""
        return _global_attention_flops(H * W, self.dim, self.num_heads, self.head_dim)


def resize_relative_position_table(table: torch.Tensor, old_grid: List[int], new_grid: List[int]) -> torch.Tensor:
    """Bicubically resize a ((2Rh-1)(2Rw-1), heads) bias table to another reference grid (checkpoint loading)."""
    heads = table.shape[1]
    oh, ow = 2 * old_grid[0] - 1, 2 * old_grid[1] - 1
    nh, nw = 2 * new_grid[0] - 1, 2 * new_grid[1] - 1
    if (oh, ow) == (nh, nw):
        return table
    grid = table.transpose(0, 1).reshape(1, heads, oh, ow).float()
    grid = F.interpolate(grid, size=(nh, nw), mode="bicubic", align_corners=False)
    return grid.reshape(heads, nh * nw).transpose(0, 1).to(table.dtype).contiguous()
