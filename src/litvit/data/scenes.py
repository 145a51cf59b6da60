"""The embedded dense data set: scenes of the bundled handwritten digits on textured canvases (no download).

Each scene is a square canvas with a smooth random texture, on which one to four digits (scikit-learn's 8x8 scans,
upscaled) are pasted at several scales and positions, dark or bright ink, the later ones occluding the earlier. It
is written to disk in the two layouts litvit reads, so `litvit train --task det | seg` without `--data` goes through
the same readers as real data:

    ROOT/coco/annotations/instances_{train,val}.json   boxes, visible-pixel masks (uncompressed RLE), classes 0-9
    ROOT/coco/{train,val}/<id>.png
    ROOT/ade/images/{training,validation}/<id>.png     the same images (hard links where the disk allows)
    ROOT/ade/annotations/{training,validation}/<id>.png  label maps: 0 = ignore (the anti-aliased rim of each
                                                         digit), 1 = background, 2 + d = digit d
    ROOT/ade/classes.txt                                  background, 0, ..., 9 (after reduce-zero-label)

Everything is a function of (canvas size, counts, seed): the train scenes use the digits' train split, the val
scenes its val split. ROOT is a folder of the cache (`$LITVIT_CACHE`, else `$XDG_CACHE_HOME/litvit`, else
~/.cache/litvit), built once and atomically (in a temporary folder renamed into place).
"""

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

from .digits import DIGITS_CLASSES, _load_digits, digits_split

__all__ = ["SCENE_CLASSES", "cache_dir", "ensure_scenes", "make_scene", "rle_encode", "write_scenes"]

VERSION = 2  # bump when the scenes change, so that old caches are not read
SCENE_CLASSES = list(DIGITS_CLASSES)
MASK_ALPHA = 0.5  # a pixel belongs to a digit where its ink covers at least half of it
RIM_ALPHA = 0.15  # ... and is ignored (label 0) where the ink covers 15-50% of it and no digit owns it
DEFAULT_COUNTS = (1000, 200)


def cache_dir() -> Path:
    root = os.environ.get("LITVIT_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "litvit"


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random colour field plus faint stripes and grain: (size, size, 3) float in 0-255."""
    grid = rng.uniform(70, 185, (4, 4, 3)).astype(np.uint8)
    base = np.asarray(Image.fromarray(grid).resize((size, size), Image.BICUBIC), dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle, period = rng.uniform(0, np.pi), rng.uniform(4, 16)
    stripes = 12.0 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    grain = rng.normal(0, 4, (size, size, 1))
    return base + stripes[..., None] + grain


def _overlap(a: Tuple[int, int, int], b: Tuple[int, int, int]) -> float:
    """Intersection over the smaller of two squares (x, y, side)."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[2], b[1] + b[2]) - max(a[1], b[1]))
    return ix * iy / min(a[2], b[2]) ** 2


def make_scene(
    rng: np.random.Generator, size: int, glyphs: np.ndarray, labels: np.ndarray
) -> Tuple[np.ndarray, List[Dict[str, Any]], np.ndarray]:
    """One scene: (image (size, size, 3) uint8, instances [{'label', 'mask' (size, size) bool}], label map).

    The instances' masks are the digits' visible pixels (later digits occlude earlier ones) and never overlap; the
    label map is 2 + digit on each mask, 1 on the background, 0 on unowned anti-aliased rims."""
    image = _texture(rng, size)
    owner = np.full((size, size), -1, dtype=np.int64)  # index of the visible digit at each pixel
    rim = np.zeros((size, size), dtype=bool)
    placed: List[Tuple[int, int, int]] = []
    kept_labels: List[int] = []
    for _ in range(int(rng.integers(1, 5))):
        # 1/6 to 1/2.2 of the canvas (21-58 px at 128): RetinaNet's smallest anchors are 32 px, so a smaller digit
        # would only ever be a low-quality match
        side = int(rng.integers(max(8, size // 6), max(9, int(size / 2.2))))
        for _attempt in range(20):
            x, y = int(rng.integers(0, size - side + 1)), int(rng.integers(0, size - side + 1))
            if all(_overlap((x, y, side), p) < 0.25 for p in placed):
                break
        else:
            continue
        k = int(rng.integers(len(glyphs)))
        glyph = Image.fromarray((glyphs[k] * (255.0 / 16.0)).round().astype(np.uint8))
        alpha = np.asarray(glyph.resize((side, side), Image.BICUBIC), dtype=np.float32).clip(0, 255) / 255.0
        ink = rng.uniform(0, 35, 3) if rng.random() < 0.5 else rng.uniform(220, 255, 3)
        window = (slice(y, y + side), slice(x, x + side))  # rows, columns of the paste
        image[window] = image[window] * (1 - alpha[..., None]) + ink * alpha[..., None]
        owner[window][alpha >= MASK_ALPHA] = len(kept_labels)
        rim[window] |= (alpha >= RIM_ALPHA) & (alpha < MASK_ALPHA)
        placed.append((x, y, side))
        kept_labels.append(int(labels[k]))
    instances = []
    semantic = np.where(rim, 0, 1).astype(np.uint8)
    for i, label in enumerate(kept_labels):
        mask = owner == i
        if mask.sum() >= 4:  # a digit hidden (almost) entirely by later ones is no object
            instances.append({"label": label, "mask": mask})
            semantic[mask] = 2 + label
        else:
            semantic[mask] = 0
    return image.clip(0, 255).round().astype(np.uint8), instances, semantic


def rle_encode(mask: np.ndarray) -> Dict[str, Any]:
    """COCO's uncompressed RLE of a (H, W) bool mask: run lengths over the column-major pixels, zeros first."""
    flat = mask.T.reshape(-1).astype(np.int8)  # (W * H,): column-major order
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def _box(mask: np.ndarray) -> List[float]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1 - cols[0]), float(rows[-1] + 1 - rows[0])]


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def write_scenes(root: Path, size: int = 128, counts: Tuple[int, int] = DEFAULT_COUNTS, seed: int = 0) -> Path:
    """Write the scene set (both layouts) under `root`; returns `root`."""
    root = Path(root)
    glyphs, targets = _load_digits()
    splits = digits_split()
    categories = [{"id": i + 1, "name": name, "supercategory": "digit"} for i, name in enumerate(SCENE_CLASSES)]
    for (coco_split, ade_split), indices, n, split_seed in zip(
        (("train", "training"), ("val", "validation")), splits, counts, (seed, seed + 1)
    ):
        rng = np.random.default_rng([VERSION, size, split_seed])
        image_dir, ade_images = root / "coco" / coco_split, root / "ade" / "images" / ade_split
        ade_labels = root / "ade" / "annotations" / ade_split
        for d in (image_dir, ade_images, ade_labels, root / "coco" / "annotations"):
            d.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for image_id in range(1, n + 1):
            image, instances, semantic = make_scene(rng, size, glyphs[indices], targets[indices])
            name = f"{image_id:06d}.png"
            Image.fromarray(image).save(image_dir / name)
            _link(image_dir / name, ade_images / name)
            Image.fromarray(semantic).save(ade_labels / name)
            images.append({"id": image_id, "file_name": name, "width": size, "height": size})
            for inst in instances:
                box = _box(inst["mask"])
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": inst["label"] + 1,
                        "bbox": box,
                        "area": float(inst["mask"].sum()),
                        "iscrowd": 0,
                        "segmentation": rle_encode(inst["mask"]),
                    }
                )
        coco = {"images": images, "annotations": annotations, "categories": categories}
        (root / "coco" / "annotations" / f"instances_{coco_split}.json").write_text(json.dumps(coco))
    (root / "ade" / "classes.txt").write_text("\n".join(["background", *SCENE_CLASSES]) + "\n")
    return root


def ensure_scenes(
    size: int = 128, counts: Tuple[int, int] = DEFAULT_COUNTS, seed: int = 0, cache: Optional[Path] = None
) -> Path:
    """The cached scene set for these settings, written on first use (atomically: concurrent runs, e.g. the ranks of
    a torchrun, all end with the same complete folder)."""
    parent = Path(cache) if cache is not None else cache_dir()
    root = parent / f"scenes-v{VERSION}-{size}px-{counts[0]}-{counts[1]}-s{seed}"
    if root.is_dir():
        return root
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=parent))
    try:
        write_scenes(tmp, size, counts, seed)
        try:
            tmp.rename(root)
        except OSError:  # another process finished first: its folder is the same
            if not root.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root
