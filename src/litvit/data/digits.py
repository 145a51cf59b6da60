"""The embedded default data set: scikit-learn's bundled handwritten digits (no download).

1,797 real 8x8 grayscale scans of the digits 0-9 (UCI ML hand-written digits, as shipped inside scikit-learn),
upscaled with bicubic interpolation to a small square RGB image. The train / val split is fixed: stratified 80 / 20
with its own seed, so every run, whatever its `--seed`, validates on the same 360 images.
"""

from typing import Any, Callable, List, Optional, Tuple

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ..errors import DataError

DIGITS_CLASSES = [str(i) for i in range(10)]
SPLIT_SEED = 0
VAL_FRACTION = 0.2


def _load_digits() -> Tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError(
            "the embedded digits data set needs scikit-learn: pip install 'litvit[train]' (or pass --data DIR)"
        ) from None
    digits = load_digits()
    return digits.images, digits.target


def digits_split() -> Tuple[np.ndarray, np.ndarray]:
    """Indices of the fixed train and val split (stratified 80 / 20, seed 0)."""
    from sklearn.model_selection import train_test_split

    _, target = _load_digits()
    train, val = train_test_split(
        np.arange(len(target)), test_size=VAL_FRACTION, stratify=target, random_state=SPLIT_SEED
    )
    return np.sort(train), np.sort(val)


class DigitsDataset(Dataset):
    """One split of the digits as RGB PIL images of `img_size` x `img_size`; `transform(img)` as for image files."""

    def __init__(self, split: str, img_size: int = 32, transform: Optional[Callable[[Image.Image], Any]] = None):
        if split not in ("train", "val"):
            raise DataError(f"digits split must be 'train' or 'val', got {split!r}")
        images, target = _load_digits()
        train, val = digits_split()
        indices = train if split == "train" else val
        self.classes: List[str] = list(DIGITS_CLASSES)
        self.targets = [int(target[i]) for i in indices]
        # 0..16 ink levels -> 0..255, then upscaled once (the transforms only crop / resize these small images).
        self.images = [
            Image.fromarray((images[i] * (255.0 / 16.0)).round().astype(np.uint8), mode="L")
            .resize((img_size, img_size), Image.BICUBIC)
            .convert("RGB")
            for i in indices
        ]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Tuple[Any, int]:
        img = self.images[index]
        if self.transform is not None:
            img = self.transform(img)
        return img, self.targets[index]
