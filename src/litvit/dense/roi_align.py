"""mmdet's `SingleRoIExtractor` (RoIAlign, aligned=True, sampling_ratio=0) for torchvision's RoI heads.

torchvision's `MultiScaleRoIAlign` samples with aligned=False (no half-pixel shift) and 2 points per bin, and infers
the level scales from the feature sizes; mmdet shifts by half a pixel, samples adaptively (ceil(roi_size / bin)
points) and maps a box of side sqrt(w * h) to level floor(log2(side / 56 + 1e-6)), clamped to the levels
(< 112 px -> P2, < 224 -> P3, < 448 -> P4, else P5), on fixed strides.
"""

from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align

__all__ = ["LevelRoIAlign"]


class LevelRoIAlign(nn.Module):
    """`forward(features, boxes, image_shapes)` -> (sum_i K_i, C, S, S): each box pooled from its one level.

    The first `len(strides)` feature maps are used (P2-P5; Mask R-CNN's P6 serves the RPN only)."""

    def __init__(self, output_size: int, strides: Sequence[int] = (4, 8, 16, 32), finest_scale: float = 56.0):
        super().__init__()
        self.output_size = output_size
        self.strides = tuple(strides)
        self.finest_scale = finest_scale

    def levels(self, boxes: Tensor) -> Tensor:
        """(K, 4) boxes -> (K,) level index."""
        side = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
        return torch.floor(torch.log2(side / self.finest_scale + 1e-6)).clamp(0, len(self.strides) - 1).long()

    def forward(self, features: Dict[str, Tensor], boxes: List[Tensor], image_shapes: List[Tuple[int, int]]) -> Tensor:
        feats = list(features.values())[: len(self.strides)]
        rois = torch.cat(
            [torch.cat([b.new_full((b.shape[0], 1), i), b], dim=1) for i, b in enumerate(boxes)]
        )  # (K, 5): image index, x1, y1, x2, y2
        levels = self.levels(rois[:, 1:])
        out = feats[0].new_zeros((rois.shape[0], feats[0].shape[1], self.output_size, self.output_size))
        for level, (feat, stride) in enumerate(zip(feats, self.strides)):
            idx = torch.where(levels == level)[0]
            if idx.numel():
                out[idx] = roi_align(
                    feat, rois[idx].to(feat.dtype), self.output_size, 1.0 / stride, sampling_ratio=0, aligned=True
                )
        return out
