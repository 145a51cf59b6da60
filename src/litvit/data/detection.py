"""The detection dataset: images of a checked COCO split (`litvit.data.coco.read_coco`) with their objects.

An item is (image (3, H, W) float in [0, 1] RGB at the file's own size, target) with target = {'boxes' (N, 4) float
x1 y1 x2 y2, 'labels' (N,) int64 0-based, 'masks' (N, H, W) uint8 with masks, 'image_id', 'size' (H, W)}: the
torchvision detection convention, where the model resizes, normalises and batches, and returns its detections in
the coordinates of the image it was given. Training flips horizontally with probability `hflip` (the official
pipeline's only augmentation besides the resize). An image that cannot be read, or whose size is not the one the
json declares (its boxes would be wrong), is handled like any unreadable image (`bad_images`).
"""

import random
from typing import Any, Dict, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import BadImageError
from .coco import CocoSet, decode_mask
from .folder import BadImage, describe_error, load_rgb

__all__ = ["DetectionDataset"]


class DetectionDataset(Dataset):
    def __init__(self, coco: CocoSet, with_masks: bool = False, hflip: float = 0.0, bad_images: str = "skip"):
        self.coco = coco
        self.with_masks = with_masks
        self.hflip = hflip
        self.bad_images = bad_images

    def __len__(self) -> int:
        return len(self.coco.images)

    def _bad(self, path: str, reason: str) -> Tuple[BadImage, None]:
        if self.bad_images == "error":
            raise BadImageError(f"cannot use image {path!r} ({reason}): fix or remove it, or pass --bad-images skip")
        return BadImage(path, reason), None

    def __getitem__(self, index: int) -> Tuple[Any, Any]:
        info = self.coco.images[index]
        path = str(self.coco.image_dir / info["file_name"])
        try:
            img = load_rgb(path)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            return self._bad(path, describe_error(e))
        w, h = info["width"], info["height"]
        if img.size != (w, h):
            return self._bad(path, f"is {img.width}x{img.height}, the annotations say {w}x{h}")
        image = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)  # (H, W, 3) -> (3, H, W)
        boxes = torch.tensor(info["boxes"], dtype=torch.float32).reshape(-1, 4)
        target: Dict[str, Any] = {
            "boxes": boxes,
            "labels": torch.tensor(info["labels"], dtype=torch.int64),
            "image_id": info["id"],
            "size": (h, w),
        }
        if self.with_masks:
            masks = [decode_mask(seg, h, w) for seg in info["masks"]]
            target["masks"] = torch.from_numpy(np.stack(masks)) if masks else torch.zeros(0, h, w, dtype=torch.uint8)
        if self.hflip > 0 and random.random() < self.hflip:
            image = image.flip(-1)
            target["boxes"] = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], dim=1)
            if self.with_masks:
                target["masks"] = target["masks"].flip(-1)
        return image.float().div_(255.0), target
