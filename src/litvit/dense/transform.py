"""torchvision's detection transform (normalise, resize, pad to /32, map outputs back) with two mmdet behaviours.

* `resize=False` skips torchvision's resize (bilinear on the normalised float image, size = floor(side * scale)), so a
  data pipeline can resize the mmdet way (cv2 on uint8, size = int(side * scale + 0.5)) before the model; outputs
  are then in the pixels of the given images.
* Masks are pasted as mmdet pastes them (`paste_masks`): one bilinear `grid_sample` of the 28x28 probabilities at
  the image's pixel centres inside the float box, instead of torchvision's 1-pixel pad, integer box and resize.
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.roi_heads import paste_masks_in_image
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes

from ..errors import DataError

__all__ = ["DetTransform", "check_inputs", "check_targets", "paste_masks"]


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


def check_inputs(
    images: Any, targets: Optional[List[Dict[str, Tensor]]], num_classes: int, training: bool = False
) -> None:
    """A detector's images and training targets at its boundary, each problem in one line that names the fix
    (torchvision's transform and heads would fail deep inside: a ZeroDivisionError for an empty side, a broadcast
    error for an (H, W, 3) image, an IndexError for float labels, or silently train boxes without their labels)."""
    if isinstance(images, Tensor) and images.dim() == 4:
        images = list(images)  # a (B, 3, H, W) batch: torchvision iterates it as a list
    if not isinstance(images, (list, tuple)):
        raise TypeError(f"images must be a list of (3, H, W) float tensors, got {type(images).__name__}")
    for i, image in enumerate(images):
        if not isinstance(image, Tensor):
            raise TypeError(
                f"image {i} is a {type(image).__name__}, not a tensor: convert it with torch.as_tensor(...)"
            )
        if image.dim() != 3 or image.shape[0] not in (1, 3):
            looks_hwc = image.dim() == 3 and image.shape[-1] in (1, 3)
            hint = "; it looks channels-last: use image.permute(2, 0, 1)" if looks_hwc else ""
            raise ValueError(f"image {i} must be a (3, H, W) tensor, got shape {list(image.shape)}{hint}")
        if not image.is_floating_point():
            raise TypeError(
                f"image {i} has dtype {image.dtype}: detectors take float images in [0, 1] (image.float() / 255)"
            )
        if image.shape[1] < 1 or image.shape[2] < 1:
            raise ValueError(f"image {i} is {image.shape[2]}x{image.shape[1]} pixels: both sides need at least one")
    if training and targets is None:
        raise DataError("a training step needs targets, model(images, targets); call model.eval() to detect")
    if training and not images:
        raise DataError("a training step needs at least one image")
    if targets is not None and len(targets) != len(images):
        raise DataError(f"{len(images)} images but {len(targets)} targets: pass one target dict per image")
    check_targets(targets, num_classes)


def check_targets(targets: Optional[List[Dict[str, Tensor]]], num_classes: int) -> None:
    """Training targets at the model's boundary: labels must be 0-based class indices (torchvision's detectors would
    fail deep inside, or silently train a label as another class)."""
    for i, t in enumerate(targets or []):
        if not isinstance(t, dict):
            raise DataError(f"target {i} is a {type(t).__name__}: pass a dict with 'boxes' (N, 4) and 'labels' (N,)")
        labels, boxes = t.get("labels"), t.get("boxes")
        if not isinstance(labels, Tensor) or not isinstance(boxes, Tensor):
            raise DataError(f"target {i} needs 'boxes' (N, 4) and 'labels' (N,) tensors")
        if boxes.dim() != 2 or boxes.shape[1] != 4 or labels.dim() != 1 or labels.shape[0] != boxes.shape[0]:
            raise DataError(
                f"target {i} has boxes of shape {list(boxes.shape)} and labels of shape {list(labels.shape)}: "
                "pass (N, 4) boxes [x1, y1, x2, y2] and (N,) labels, one per box"
            )
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise DataError(f"target {i} has {labels.dtype} labels: pass class indices as integers (labels.long())")
        if boxes.numel() and not bool(torch.isfinite(boxes).all()):
            raise DataError(f"target {i} has a box that is NaN or infinite: fix or drop it")
        flat = (boxes[:, 2:] <= boxes[:, :2]).any(dim=1)
        if bool(flat.any()):
            box = [round(v, 2) for v in boxes[int(flat.nonzero()[0])].tolist()]
            raise DataError(
                f"target {i} has the box {box} with x2 <= x1 or y2 <= y1: boxes are [x1, y1, x2, y2] corners (not "
                "[x, y, w, h]) and need a positive width and height"
            )
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise DataError(
                f"target {i} has label {int(labels.max() if labels.max() >= num_classes else labels.min())}: labels "
                f"are 0-based class indices 0..{num_classes - 1} (no background class)"
            )
