"""torchvision's detection transform (normalise, resize, pad to /32, map outputs back) with two mmdet behaviours.

* `resize=False` skips torchvision's resize (bilinear on the normalised float image, size = floor(side * scale)), so a
  data pipeline can resize the mmdet way (cv2 on uint8, size = int(side * scale + 0.5)) before the model; outputs
  are then in the pixels of the given images.
* Masks are pasted as mmdet pastes them (`paste_masks`): one bilinear `grid_sample` of the 28x28 probabilities at
  the image's pixel centres inside the float box, instead of torchvision's 1-pixel pad, integer box and resize.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.roi_heads import paste_masks_in_image
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes

from ..errors import DataError

__all__ = ["DetTransform", "check_targets", "paste_masks"]


class DetTransform(GeneralizedRCNNTransform):
    """`GeneralizedRCNNTransform` that can skip resizing (`min_size=None`) and pastes masks like mmdet
    (`mask_paste='mmdet'`; 'torchvision' keeps torchvision's paste)."""

    def __init__(
        self,
        min_size: Optional[int],
        max_size: int,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        mask_paste: str = "mmdet",
    ):
        if mask_paste not in ("mmdet", "torchvision"):
            raise ValueError(f"mask_paste must be 'mmdet' or 'torchvision', got {mask_paste!r}")
        super().__init__(min_size or 800, max_size, list(image_mean), list(image_std), size_divisible=32)
        self.resize_images = min_size is not None
        self.mask_paste = mask_paste

    def resize(
        self, image: Tensor, target: Optional[Dict[str, Tensor]] = None
    ) -> Tuple[Tensor, Optional[Dict[str, Tensor]]]:
        if not self.resize_images:
            return image, target
        return super().resize(image, target)

    def postprocess(
        self,
        result: List[Dict[str, Tensor]],
        image_shapes: List[Tuple[int, int]],
        original_image_sizes: List[Tuple[int, int]],
    ) -> List[Dict[str, Tensor]]:
        if self.training:
            return result
        for pred, im_s, o_im_s in zip(result, image_shapes, original_image_sizes):
            pred["boxes"] = resize_boxes(pred["boxes"], im_s, o_im_s)
            if "masks" in pred:
                paste = paste_masks if self.mask_paste == "mmdet" else paste_masks_in_image
                pred["masks"] = paste(pred["masks"], pred["boxes"], o_im_s)
        return result


def paste_masks(masks: Tensor, boxes: Tensor, image_size: Tuple[int, int]) -> Tensor:
    """(N, 1, M, M) mask probabilities in float boxes (N, 4) -> (N, 1, H, W) image probabilities, mmdet's rule.

    Every image pixel centre (x + 0.5, y + 0.5) is mapped into its box's [-1, 1] range and sampled bilinearly
    (`grid_sample`, align_corners=False, zeros outside): the float box is used as is, nothing is rounded.
    """
    h, w = int(image_size[0]), int(image_size[1])
    n = masks.shape[0]
    if n == 0:
        return masks.new_zeros((0, 1, h, w))
    x0, y0, x1, y1 = boxes.float().unbind(dim=1)  # (N,) each
    ys = torch.arange(h, device=masks.device, dtype=torch.float32) + 0.5
    xs = torch.arange(w, device=masks.device, dtype=torch.float32) + 0.5
    gy = (ys[None] - y0[:, None]) / (y1 - y0)[:, None] * 2 - 1  # (N, H)
    gx = (xs[None] - x0[:, None]) / (x1 - x0)[:, None] * 2 - 1  # (N, W)
    # An empty box (zero width / height) divides by 0: its mask is empty here (mmdet maps inf to 0, the box centre,
    # and so fills the whole image with the mask's middle value).
    gy, gx = (
        torch.nan_to_num(gy, nan=2.0, posinf=2.0, neginf=2.0),
        torch.nan_to_num(gx, nan=2.0, posinf=2.0, neginf=2.0),
    )
    grid = torch.stack([gx[:, None, :].expand(n, h, w), gy[:, :, None].expand(n, h, w)], dim=3)  # (N, H, W, 2)
    return F.grid_sample(masks.float(), grid, align_corners=False).to(masks.dtype)  # (N, 1, H, W)


def check_targets(targets: Optional[List[Dict[str, Tensor]]], num_classes: int) -> None:
    """Training targets at the model's boundary: labels must be 0-based class indices (torchvision's detectors would
    fail deep inside, or silently train a label as another class)."""
    for i, t in enumerate(targets or []):
        labels = t.get("labels")
        if labels is None or "boxes" not in t:
            raise DataError(f"target {i} needs 'boxes' (N, 4) and 'labels' (N,)")
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise DataError(
                f"target {i} has label {int(labels.max() if labels.max() >= num_classes else labels.min())}: labels "
                f"are 0-based class indices 0..{num_classes - 1} (no background class)"
            )
