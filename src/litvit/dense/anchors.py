"""mmdet's anchors and box coder for torchvision's detection heads.

torchvision's `AnchorGenerator` truncates sizes to int (RetinaNet 32, 40, 50 instead of 32, 40.32, 50.80), rounds
the base anchors and derives each level's stride as image_size // feature_size (61 instead of 64 for the P6 of an
800-pixel side). `MMDetAnchorGenerator` computes mmdet's `AnchorGenerator` instead: float base anchors
(base size = stride, centre offset 0, ratio-major / scale-minor order, ratio = h / w) on fixed strides.
`MMDetBoxCoder` is torchvision's `BoxCoder` with mmdet's two-sided clamp of dw, dh (torchvision clamps the max only).
"""

import math
from typing import List, Sequence

import torch
from torch import nn
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

__all__ = ["MMDetAnchorGenerator", "MMDetBoxCoder", "WH_RATIO_CLIP"]

# mmdet's DeltaXYWHBBoxCoder: |dw|, |dh| <= |log(16 / 1000)|
WH_RATIO_CLIP = abs(math.log(16 / 1000))


class MMDetAnchorGenerator(AnchorGenerator):
    """Anchors of mmdet's `AnchorGenerator` (base sizes = strides) for torchvision's RetinaNet / RPN.

    `scales` multiply each level's stride (RetinaNet: 4 * 2^(k/3); RPN: 8); `ratios` are h / w.
    `forward(images, features)` returns one (sum_l H_l * W_l * A, 4) tensor per image, location-major and
    anchor-minor within each level, levels concatenated: the order of the heads' outputs. (A subclass of torchvision's
    `AnchorGenerator` because its detectors check the type; none of its state or methods is used.)
    """

    def __init__(self, strides: Sequence[int], scales: Sequence[float], ratios: Sequence[float] = (0.5, 1.0, 2.0)):
        nn.Module.__init__(self)  # not AnchorGenerator.__init__: its integer cell anchors are never used
        self.strides = tuple(strides)
        self.scales = tuple(scales)
        self.ratios = tuple(ratios)

    def num_anchors_per_location(self) -> List[int]:
        return [len(self.scales) * len(self.ratios)] * len(self.strides)

    def base_anchors(self, stride: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """(A, 4) anchors centred at (0, 0), float (not rounded), in mmdet's float32 arithmetic."""
        scales = torch.tensor(self.scales, dtype=torch.float32, device=device)
        h_ratios = torch.sqrt(torch.tensor(self.ratios, dtype=torch.float32, device=device))
        w_ratios = 1 / h_ratios
        ws = (stride * w_ratios[:, None] * scales[None, :]).view(-1)  # (A,) ratio-major, scale-minor
        hs = (stride * h_ratios[:, None] * scales[None, :]).view(-1)
        return torch.stack([-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs], dim=-1).to(dtype)

    def grid_anchors(self, size: Sequence[int], stride: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """(H * W * A, 4): base anchors shifted to (x * stride, y * stride), row-major over the map."""
        h, w = size
        shift_x = torch.arange(w, device=device).to(dtype) * stride
        shift_y = torch.arange(h, device=device).to(dtype) * stride
        yy, xx = torch.meshgrid(shift_y, shift_x, indexing="ij")  # (H, W) each
        shifts = torch.stack([xx, yy, xx, yy], dim=-1).reshape(-1, 1, 4)  # (H * W, 1, 4)
        return (shifts + self.base_anchors(stride, dtype, device)[None]).reshape(-1, 4)

    def forward(self, images: ImageList, features: List[torch.Tensor]) -> List[torch.Tensor]:
        if len(features) != len(self.strides):
            raise ValueError(f"{len(features)} feature maps for {len(self.strides)} anchor strides")
        dtype, device = features[0].dtype, features[0].device
        anchors = torch.cat([self.grid_anchors(f.shape[-2:], s, dtype, device) for f, s in zip(features, self.strides)])
        return [anchors for _ in range(len(images.image_sizes))]


class MMDetBoxCoder(det_utils.BoxCoder):
    """torchvision's box coder (weights = 1 / mmdet's stds) clamping dw, dh to +-log(1000/16) like mmdet."""

    def __init__(self, weights: Sequence[float]):
        super().__init__(tuple(weights), bbox_xform_clip=WH_RATIO_CLIP)

    def decode_single(self, rel_codes: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        rel_codes = rel_codes.clone()
        ww, wh = self.weights[2], self.weights[3]
        rel_codes[:, 2::4] = rel_codes[:, 2::4].clamp(min=-self.bbox_xform_clip * ww)  # max side: torchvision's
        rel_codes[:, 3::4] = rel_codes[:, 3::4].clamp(min=-self.bbox_xform_clip * wh)
        return super().decode_single(rel_codes, boxes)
