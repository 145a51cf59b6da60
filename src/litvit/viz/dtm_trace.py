"""Where deformable token merging looks: the learned DTM offsets traced back to input pixels.

Each DTM turns output position (ho, wo) into 4 taps on its input map, tap t = 2i + j at
(2 ho + i + dy_t, 2 wo + j + dx_t) (litvit.layers.dtm, /work/shared/spec/ARCHITECTURE.md). A token of the last map
therefore reads 4 positions of the map before the last merge, each of those 4 of the map before, and so on: 4**n
points on the stage-1 map after n merges, which the patch embedding (stride p) places in the image. With zero
offsets (a fresh DTM) the points are the regular 2**n x 2**n block of stage-1 tokens under the target; trained
offsets show how the model reshapes its receptive field around objects.
"""

from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ._model import dtm_modules, evaluating, model_input, patch_stride
from .hooks import capture

__all__ = ["OffsetResult", "offsets", "trace_points", "default_targets"]


@dataclass
class OffsetResult:
    """Sampling points of `offsets()`.

    targets: (T, 2) int (row, col) on the last map (the output of the last DTM).
    points: (T, 4**n, 2) float (y, x) input-pixel positions; point 4k + t of a target is tap t of the first merge
        at point k of the later merges (the last merge's taps vary slowest, the first merge's fastest).
    target_pixels: (T, 2) float (y, x) pixel centre of each target token.
    stride: input pixels per last-map token side (patch stride * 2**n).
    image_size: (H, W) of the input.
    layers: names of the DTM modules, in forward order.
    fields: one (8, h, w) offset map per DTM (channel 2t = dy, 2t + 1 = dx of tap t), in forward order.
    """

    targets: np.ndarray
    points: np.ndarray
    target_pixels: np.ndarray
    stride: int
    image_size: tuple
    layers: List[str]
    fields: List[np.ndarray]


def default_targets(height: int, width: int, grid: int) -> np.ndarray:
    """(T, 2) (row, col) of an evenly spread grid x grid set of tokens on an height x width map (fewer if smaller)."""
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise ConfigError(f"grid must be an integer >= 1 (targets per side), got {grid!r}")
    rows = np.unique(np.floor((np.arange(grid) + 0.5) * height / grid).astype(int))
    cols = np.unique(np.floor((np.arange(grid) + 0.5) * width / grid).astype(int))
    return np.stack(np.meshgrid(rows, cols, indexing="ij"), axis=-1).reshape(-1, 2)


def _sample(field: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Bilinear value of an (8, h, w) offset field at float positions (..., 2) (y, x), clamped to the map: (..., 8).

    Exact at integer positions (the only ones a single merge has); between tokens, the offsets of the neighbours
    are blended, the same weights the bilinear sample at that position gives their features.
    """
    _, h, w = field.shape
    y = np.clip(pos[..., 0], 0, h - 1)
    x = np.clip(pos[..., 1], 0, w - 1)
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (y - y0)[..., None], (x - x0)[..., None]
    f = field.transpose(1, 2, 0)  # (8, h, w) -> (h, w, 8)
    top = f[y0, x0] * (1 - fx) + f[y0, x1] * fx
    bottom = f[y1, x0] * (1 - fx) + f[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def trace_points(fields: Sequence[np.ndarray], targets: np.ndarray) -> np.ndarray:
    """(T, 4**n, 2) float (y, x) positions on the map before the first of n merges that the last-map `targets`
    (T, 2) read, given each merge's (8, h, w) offset field in forward order."""
    pos = targets.astype(np.float64)[:, None, :]  # (T, 1, 2) on the last map
    tap = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)  # (i, j) of tap t = 2i + j
    for field in reversed(fields):
        off = _sample(np.asarray(field, dtype=np.float64), pos).reshape(*pos.shape[:2], 4, 2)  # (T, K, 4, [dy, dx])
        pos = 2 * pos[:, :, None, :] + tap + off  # (T, K, 4, 2) taps on this merge's input map
        pos = pos.reshape(pos.shape[0], -1, 2)  # (T, K, 4, 2) -> (T, 4K, 2)
    return pos


def offsets(model: nn.Module, x: torch.Tensor, targets: Optional[np.ndarray] = None, grid: int = 4) -> OffsetResult:
    """Trace the DTM offsets of image `x` (1, 3, H, W) (the first image if a batch) back to input pixels.

    targets: (T, 2) (row, col) tokens of the last map; default `grid` x `grid` tokens spread over it.
    A stage-1 position p (float) is the pixel (p + 0.5) * stride - 0.5: token p covers pixels [p s, p s + s - 1]
    and its centre is the centre of that patch (the patch embedding pads the image on the right / bottom only).
    """
    dtms = dtm_modules(model)
    x = model_input(model, x)[:1]
    with torch.no_grad(), evaluating(model), capture({n: m.dconv.conv_offset for n, m in dtms}) as seen:
        model(x)
    fields = [seen[n][0][0].float().cpu().numpy() for n, _ in dtms]  # each (8, h, w)
    last_h, last_w = fields[-1].shape[1:]
    if targets is None:
        targets = default_targets(last_h, last_w, grid)
    targets = np.asarray(targets)
    if targets.ndim != 2 or targets.shape[1] != 2 or not np.issubdtype(targets.dtype, np.integer):
        raise ConfigError(f"targets must be (T, 2) integer (row, col) tokens of the last map, got {targets.shape}")
    if targets.size and (targets.min() < 0 or (targets[:, 0] >= last_h).any() or (targets[:, 1] >= last_w).any()):
        raise ConfigError(f"targets must lie on the {last_h}x{last_w} last map (rows 0..{last_h - 1}, cols 0..)")
    p = patch_stride(model)
    stride = p * 2 ** len(fields)
    return OffsetResult(
        targets=targets,
        points=(trace_points(fields, targets) + 0.5) * p - 0.5,
        target_pixels=(targets + 0.5) * stride - 0.5,
        stride=stride,
        image_size=tuple(x.shape[-2:]),
        layers=[n for n, _ in dtms],
        fields=fields,
    )
