"""The official ADE20K pipelines (mmseg 0.13, spec/DENSE.md section 3.2), on PIL images and uint8 label maps.

Training: resize to `scale` (long, short) x a ratio drawn from `ratio_range`, keeping the aspect (bilinear image,
nearest labels); a random `crop` x `crop` window, re-drawn up to 10 times while one class covers more than
`cat_max_ratio` of it; a horizontal flip; the photometric distortion (brightness, contrast, saturation, hue);
ImageNet normalisation; padding to the crop size (image 0, label 255). Test: the same resize without the ratio,
no crop, no flip, no padding. Randomness comes from Python's `random`, which the loader seeds per sample.
"""

import random
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .ade import IGNORE_INDEX

__all__ = ["SegEvalTransform", "SegTrainTransform", "normalize", "rescale_size"]

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)  # ImageNet, RGB, on 0-1 (= 123.675 ... on 0-255)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def rescale_size(width: int, height: int, scale: Sequence[float]) -> Tuple[int, int]:
    """mmcv's keep-ratio rescale: the largest size whose long side fits scale[0] and short side scale[1]."""
    factor = min(max(scale) / max(width, height), min(scale) / min(width, height))
    return int(width * factor + 0.5), int(height * factor + 0.5)


def normalize(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> (3, H, W) float, ImageNet-normalised."""
    x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
    return (x - MEAN) / STD  # (H, W, 3) -> (3, H, W) above


def _photometric(img: np.ndarray) -> np.ndarray:
    """mmseg's PhotoMetricDistortion on a float (H, W, 3) 0-255 RGB array: each step with probability 1/2, contrast
    before or after the colour steps."""
    img = img.copy()
    if random.random() < 0.5:
        img += random.uniform(-32, 32)
    contrast_first = random.random() < 0.5
    if contrast_first and random.random() < 0.5:
        img *= random.uniform(0.5, 1.5)
    img = img.clip(0, 255)
    sat = random.uniform(0.5, 1.5) if random.random() < 0.5 else None
    hue = random.randint(-18, 18) if random.random() < 0.5 else None
    if sat is not None or hue is not None:
        hsv = np.asarray(Image.fromarray(img.round().astype(np.uint8)).convert("HSV"), dtype=np.float32)
        if sat is not None:
            hsv[..., 1] = (hsv[..., 1] * sat).clip(0, 255)
        if hue is not None:  # OpenCV's hue is 0-180 per turn (mmseg's +-18), PIL's 0-255
            hsv[..., 0] = (hsv[..., 0] + hue * 255.0 / 180.0) % 256
        img = np.asarray(Image.fromarray(hsv.round().astype(np.uint8), "HSV").convert("RGB"), dtype=np.float32)
    if not contrast_first and random.random() < 0.5:
        img *= random.uniform(0.5, 1.5)
    return img.clip(0, 255)


class SegTrainTransform:
    def __init__(
        self,
        crop: int,
        scale: Sequence[int],
        ratio_range: Sequence[float] = (0.5, 2.0),
        cat_max_ratio: float = 0.75,
        hflip: float = 0.5,
        photometric: bool = True,
    ):
        self.crop, self.scale, self.ratio_range = crop, tuple(scale), tuple(ratio_range)
        self.cat_max_ratio, self.hflip, self.photometric = cat_max_ratio, hflip, photometric

    def _crop_box(self, label: np.ndarray) -> Tuple[int, int]:
        h, w = label.shape
        for _ in range(10):
            top = random.randint(0, max(h - self.crop, 0))
            left = random.randint(0, max(w - self.crop, 0))
            window = label[top : top + self.crop, left : left + self.crop]
            _, counts = np.unique(window[window != IGNORE_INDEX], return_counts=True)
            if self.cat_max_ratio >= 1 or (len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio):
                break
        return top, left

    def __call__(self, img: Image.Image, label: np.ndarray) -> Tuple[torch.Tensor, torch.Tensor]:
        ratio = random.uniform(*self.ratio_range)
        size = rescale_size(img.width, img.height, [s * ratio for s in self.scale])
        img = img.resize(size, Image.BILINEAR)
        label = np.asarray(Image.fromarray(label).resize(size, Image.NEAREST))
        top, left = self._crop_box(label)
        img = img.crop((left, top, left + min(self.crop, img.width), top + min(self.crop, img.height)))
        label = label[top : top + self.crop, left : left + self.crop]
        if random.random() < self.hflip:
            img, label = img.transpose(Image.FLIP_LEFT_RIGHT), label[:, ::-1]
        if self.photometric:
            img = Image.fromarray(_photometric(np.asarray(img, dtype=np.float32)).round().astype(np.uint8))
        x = normalize(img)
        y = torch.from_numpy(np.array(label, dtype=np.int64))  # a copy: the array may be read-only
        pad_h, pad_w = self.crop - x.shape[1], self.crop - x.shape[2]
        x = F.pad(x, (0, pad_w, 0, pad_h), value=0.0)
        y = F.pad(y, (0, pad_w, 0, pad_h), value=IGNORE_INDEX)
        return x, y


class SegEvalTransform:
    """Keep-ratio resize to `scale` (None: the image as it is); the label map stays at the image's own size, where
    the prediction is compared with it."""

    def __init__(self, scale: Optional[Sequence[int]]):
        self.scale = tuple(scale) if scale else None

    def __call__(self, img: Image.Image, label: np.ndarray) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.scale is not None:
            img = img.resize(rescale_size(img.width, img.height, self.scale), Image.BILINEAR)
        return normalize(img), torch.from_numpy(np.array(label, dtype=np.int64))
