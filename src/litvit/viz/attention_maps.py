"""Where one token looks: the attention weights of a query token in every attention layer, per head.

The fused kernels (scaled_dot_product_attention) never form the attention matrix, so each layer's input is captured
and the query's row of softmax(q k^T) is recomputed from the layer's own weights, for that one token only:
LITv2 HiLo layers give their Lo-Fi heads (over the s x s average-pooled map) and their Hi-Fi heads (inside the
query's s x s window), LIT-S/M/B their relative-position MSA (bias included), LIT-Ti its plain MSA (the class token
of stage 4 is a key too). Each key grid is then spread over the input pixels its tokens cover.
"""

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..layers.attention import Attention, RelPosAttention
from ..layers.hilo import HiLo
from ..models._pyramid import stage_grid_sizes
from ._model import attention_modules, evaluating, model_input, patch_stride, stage_of
from .hooks import capture

__all__ = ["AttentionResult", "attention", "to_pixels"]


@dataclass
class AttentionResult:
    """Attention of one query token, from `attention()`.

    maps: (layer, (heads, H, W)) attention weights spread over the input pixels; a HiLo layer gives two entries,
        `<name>.lofi` and `<name>.hifi` (zero outside the query's window).
    raw: (layer, (heads, K)) the same weights over the layer's K key tokens, before spreading (each row sums to 1;
        for LIT-Ti's stage 4, key 0 is the class token, which `maps` leave out).
    query: (y, x) fractions of the image height / width; query_pixel: (y, x) pixel centre of the query token's
        stage-1 patch; image_size: (H, W).
    """

    maps: List[Tuple[str, np.ndarray]]
    raw: List[Tuple[str, np.ndarray]]
    query: Tuple[float, float]
    query_pixel: Tuple[float, float]
    image_size: Tuple[int, int]


def to_pixels(grid: torch.Tensor, cell: int, size: Tuple[int, int]) -> np.ndarray:
    """(heads, gh, gw) values per token -> (heads, H, W): each token's value over its cell x cell pixels, cropped
    (or zero-padded: tokens a floored merge dropped) to the image size."""
    pixels = grid.repeat_interleave(cell, dim=1).repeat_interleave(cell, dim=2)[:, : size[0], : size[1]]
    pad = (0, size[1] - pixels.shape[2], 0, size[0] - pixels.shape[1])
    return F.pad(pixels, pad).float().cpu().numpy()


def _softmax_row(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    """q (heads, d), k (K, heads, d) -> (heads, K) attention weights of the one query."""
    return torch.softmax(torch.einsum("hd,khd->hk", q * scale, k), dim=-1)


def _hilo(layer: HiLo, x: torch.Tensor, r: int, c: int, cell: int, size: Tuple[int, int]) -> List[tuple]:
    """Lo-Fi and Hi-Fi attention of token (r, c) of the HiLo input map x (1, h, w, C)."""
    s, d = layer.window_size, layer.head_dim
    h, w = x.shape[1:3]
    x = F.pad(x, (0, 0, 0, (s - w % s) % s, 0, (s - h % s) % s))  # the layer's own padding: (1, Hp, Wp, C)
    out = []
    if layer.l_q is not None and layer.l_kv is not None:
        q = layer.l_q(x[0, r, c]).reshape(layer.l_heads, d)
        pooled = F.avg_pool2d(x.permute(0, 3, 1, 2), s).permute(0, 2, 3, 1)[0] if s > 1 else x[0]  # (Hp/s, Wp/s, C)
        gh, gw = pooled.shape[:2]
        k = layer.l_kv(pooled).reshape(gh * gw, 2, layer.l_heads, d)[:, 0]  # (M, 2, h, d) -> keys (M, h, d)
        probs = _softmax_row(q, k, layer.scale)  # (h, M)
        out.append(("lofi", probs, to_pixels(probs.reshape(-1, gh, gw), cell * s, size)))
    if layer.h_qkv is not None:
        r0, c0 = r - r % s, c - c % s
        window = x[0, r0 : r0 + s, c0 : c0 + s].reshape(s * s, -1)  # (s, s, C) -> (s * s, C)
        qkv = layer.h_qkv(window).reshape(s * s, 3, layer.h_heads, d)
        probs = _softmax_row(qkv[(r % s) * s + c % s, 0], qkv[:, 1], layer.scale)  # (h, s * s)
        grid = x.new_zeros(layer.h_heads, x.shape[1], x.shape[2])
        grid[:, r0 : r0 + s, c0 : c0 + s] = probs.reshape(-1, s, s)
        out.append(("hifi", probs, to_pixels(grid, cell, size)))
    return out


def _msa(layer: nn.Module, x: torch.Tensor, grid: Tuple[int, int], r: int, c: int) -> torch.Tensor:
    """(heads, K) attention of token (r, c) in a relative-position or plain MSA layer; x (1, h, w, C) or
    (1, 1 + h * w, C) with a class token first."""
    tokens = x.reshape(1, -1, x.shape[-1])[0]  # (K, C)
    extra = tokens.shape[0] - grid[0] * grid[1]  # 1 with a class token
    qkv = layer.qkv(tokens).reshape(tokens.shape[0], 3, layer.num_heads, layer.head_dim)
    query = extra + r * grid[1] + c
    logits = torch.einsum("hd,khd->hk", qkv[query, 0] * layer.scale, qkv[:, 1])
    if isinstance(layer, RelPosAttention):
        logits = logits + layer.relative_position_bias(*grid)[:, query - extra].to(logits.dtype)
    return torch.softmax(logits, dim=-1)


def attention(model: nn.Module, x: torch.Tensor, query: Sequence[float] = (0.5, 0.5)) -> AttentionResult:
    """Attention weights of the token under `query` ((y, x) fractions of the image height / width) in every
    attention layer of `model` for image `x` (1, 3, H, W) (the first image if a batch)."""
    if len(query) != 2 or not all(0.0 <= float(q) <= 1.0 for q in query):
        raise ConfigError(f"query must be two fractions (y, x) of the image height / width in [0, 1], got {query!r}")
    layers = attention_modules(model)
    if not layers:
        raise ConfigError(f"{type(model).__name__} has no attention layer to show")
    x = model_input(model, x)[:1]
    size = (int(x.shape[-2]), int(x.shape[-1]))
    patch = patch_stride(model)
    stages = 1 + max(stage_of(n) for n, _ in layers)
    grids = stage_grid_sizes(size, patch, stages)
    py, px = min(float(query[0]) * size[0], size[0] - 1), min(float(query[1]) * size[1], size[1] - 1)
    maps, raw = [], []
    with torch.no_grad(), evaluating(model), capture(dict(layers), what="input") as seen:
        model(x)
    with torch.no_grad():
        for name, layer in layers:
            stage = stage_of(name)
            cell = patch * 2**stage
            grid = grids[stage]
            r, c = min(int(py // cell), grid[0] - 1), min(int(px // cell), grid[1] - 1)
            inp = seen[name][0]
            if isinstance(layer, HiLo):
                for kind, probs, pixels in _hilo(layer, inp, r, c, cell, size):
                    raw.append((f"{name}.{kind}", probs.float().cpu().numpy()))
                    maps.append((f"{name}.{kind}", pixels))
            elif isinstance(layer, (RelPosAttention, Attention)):
                probs = _msa(layer, inp, grid, r, c)
                raw.append((name, probs.float().cpu().numpy()))
                keys = probs[:, probs.shape[1] - grid[0] * grid[1] :].reshape(-1, *grid)  # the class token dropped
                maps.append((name, to_pixels(keys, cell, size)))
    cell0 = patch
    qr, qc = int(py // cell0), int(px // cell0)
    return AttentionResult(
        maps, raw, (float(query[0]), float(query[1])), ((qr + 0.5) * cell0 - 0.5, (qc + 0.5) * cell0 - 0.5), size
    )
