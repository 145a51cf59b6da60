"""The accuracy cost of a faster runtime: how often it picks the same class as eager fp32, and how far its logits
move, on held-out real images (benchmarks/deploy.py; the speed is `litvit bench --runtime`).

Two image sets, neither downloaded:

* `digits_batches`: the embedded digits' validation split (360 real scans, never trained on), for a model trained
  on their train split (`litvit train`'s default run) — the in-distribution check that carries the int8 target;
* `photo_batches`: scikit-learn's two bundled sample photos (`load_sample_images`: a Chinese temple, a flower), as
  random crops and their mirror images — natural-image statistics (smooth regions, edges, colour) that no digit has.
"""

from typing import Any, Callable, Dict, Iterable, List

import numpy as np
import torch
from PIL import Image

Logits = Callable[[torch.Tensor], torch.Tensor]


def agreement(reference: Logits, candidate: Logits, batches: Iterable[torch.Tensor]) -> Dict[str, Any]:
    """Top-1 agreement of `candidate` with `reference` and the largest |logit difference| over `batches`."""
    same, total, worst, scale = 0, 0, 0.0, 0.0
    with torch.inference_mode():
        for x in batches:
            ref, out = reference(x).float(), candidate(x).float()
            same += int((ref.argmax(-1) == out.argmax(-1)).sum())
            total += ref.shape[0]
            worst = max(worst, float((out - ref).abs().max()))
            scale = max(scale, float(ref.abs().max()))
    return {
        "images": total,
        "top1_agreement": same / max(total, 1),
        "max_abs_logit_diff": worst,
        "max_abs_logit": scale,
    }


def _batched(images: List[torch.Tensor], batch: int) -> List[torch.Tensor]:
    """Whole batches of `batch` images only (a compiled runtime recompiles for a different size; the rest is
    dropped)."""
    return [torch.stack(images[i : i + batch]) for i in range(0, len(images) - batch + 1, batch)]


def digits_batches(transform: Callable[[Image.Image], torch.Tensor], split: str, batch: int, img_size: int = 32):
    """The digits `split` ('val': the held-out 360) through `transform` (the model's eval transform)."""
    from ..data.digits import DigitsDataset

    data = DigitsDataset(split, img_size=img_size)
    return _batched([transform(data[i][0]) for i in range(len(data))], batch)


def photo_images(count: int, seed: int = 0) -> List[Image.Image]:
    """`count` square crops (40-100% of the shorter side, anywhere) of scikit-learn's two sample photos, every second
    one mirrored."""
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(np.asarray(a)) for a in load_sample_images().images]  # 427x640 RGB each
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        img = photos[i % len(photos)]
        side = int(min(img.size) * rng.uniform(0.4, 1.0))
        left, top = int(rng.integers(0, img.width - side + 1)), int(rng.integers(0, img.height - side + 1))
        crop = img.crop((left, top, left + side, top + side))
        out.append(crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if i % 2 else crop)
    return out


def photo_batches(transform: Callable[[Image.Image], torch.Tensor], count: int, batch: int, seed: int = 0):
    """`photo_images` through `transform`, in whole batches."""
    return _batched([transform(img) for img in photo_images(count, seed)], batch)
