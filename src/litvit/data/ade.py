"""ADE20K-style semantic segmentation data: `DIR/images/{training,validation}/<name>.<ext>` with one label map each,
`DIR/annotations/{training,validation}/<name>.png` (8-bit class indices, 0 = other / ignore).

The labels are reduced as mmseg's `reduce_zero_label` does for ADE20K: 0 becomes the ignore index 255 and k becomes
k - 1, so the 150 ADE classes are 0..149. Class names come from `DIR/classes.txt` (one per line, for labels 1, 2,
...) when it exists, else the class count from --num-classes (default 150, ADE20K's) names them by number.

The pairs are checked before anything trains, from the file headers only: an image without a label map, or a map
whose size differs from its image's, is skipped and reported (`bad_annotations='skip'`) or stops the run
(`'error'`). A map holding a class beyond the class count is found when it is read: then the image is skipped and
named like an unreadable image (or the run stops, with `--bad-images error`).
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ..errors import BadImageError, DataError, DataNotFoundError
from ..options import BAD_IMAGE_MODES
from .folder import BadImage, describe_error, image_extensions, load_rgb
from .problems import Problem, refuse_problems, skipped_note

__all__ = ["ADE_CLASSES", "IGNORE_INDEX", "SegPairs", "SegmentationDataset", "read_label", "scan_ade"]

IGNORE_INDEX = 255
ADE_CLASSES = 150


@dataclass
class SegPairs:
    """A checked split: (image, label map) pairs and the class names."""

    pairs: List[Tuple[str, str]]
    classes: List[str]
    problems: List[Problem] = field(default_factory=list)

    def notes(self, what: str) -> List[str]:
        return skipped_note(self.problems, what, "image(s)", "add or fix the label maps")


def _classes(root: Path, num_classes: Optional[int]) -> List[str]:
    path = root / "classes.txt"
    if path.is_file():
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if num_classes is not None and num_classes != len(names):
            raise DataError(
                f"--num-classes {num_classes}, but {str(path)!r} names {len(names)} classes: drop --num-classes "
                "or fix classes.txt"
            )
        if len(names) < 2:
            raise DataError(f"{str(path)!r} names {len(names)} class(es): a segmenter needs two or more")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:  # label k's name is line k: a repeated line usually means one is missing or shifted
            lines = [i + 1 for i, n in enumerate(names) if n == twice[0]]
            raise DataError(
                f"{str(path)!r} names {twice[0]!r} more than once (lines {', '.join(map(str, lines))} of its non-empty "
                "lines): give each class label its own name"
            )
        return names
    return [str(i) for i in range(num_classes or ADE_CLASSES)]


def scan_ade(
    root: str,
    split: str,
    bad_annotations: str = "skip",
    num_classes: Optional[int] = None,
    classes: Optional[Sequence[str]] = None,
) -> SegPairs:
    """The checked (image, label map) pairs of `split` ('training' / 'validation')."""
    if bad_annotations not in BAD_IMAGE_MODES:
        raise DataError(f"bad_annotations must be one of {BAD_IMAGE_MODES}, got {bad_annotations!r}")
    base = Path(root)
    images, labels = base / "images" / split, base / "annotations" / split
    if not base.is_dir():
        raise DataNotFoundError(
            f"data folder {root!r} does not exist: pass the ADE20K-style folder holding images/{split}/ and "
            f"annotations/{split}/ (or leave --data out to train on the embedded scenes)"
        )
    for folder in (images, labels):
        if not folder.is_dir():
            raise DataNotFoundError(
                f"{str(folder)!r} does not exist: --task seg reads ADE20K's layout, DIR/images/{{training,"
                "validation}/<name>.jpg with DIR/annotations/{training,validation}/<name>.png"
            )
    names = _classes(base, num_classes)
    if classes is not None and list(classes) != names:
        raise DataError(
            f"{root!r} has other classes ({len(names)}) than the model was trained on ({len(classes)}): evaluate on "
            "data with the same classes (classes.txt / --num-classes)"
        )
    exts = image_extensions()
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in exts and not p.name.startswith("."))
    if not files:
        raise DataError(f"{str(images)!r} holds no images: put the {split} images there")
    pairs: List[Tuple[str, str]] = []
    problems: List[Problem] = []
    for img in files:
        lab = labels / f"{img.stem}.png"
        if not lab.is_file():
            problems.append((img.name, f"no label map {lab.name} in {labels}"))
            continue
        try:
            with Image.open(img) as a, Image.open(lab) as b:  # headers only: nothing is decoded here
                size_i, size_l = a.size, b.size
        except (OSError, ValueError, SyntaxError) as e:
            problems.append((img.name, describe_error(e)))
            continue
        if size_i != size_l:
            problems.append((img.name, f"label map is {size_l[0]}x{size_l[1]}, the image {size_i[0]}x{size_i[1]}"))
            continue
        pairs.append((str(img), str(lab)))
    refuse_problems(problems, bad_annotations, f"{root!r} {split}", "fix the label maps", "those images")
    if not pairs:
        raise DataError(f"{root!r} {split}: no image has a usable label map: check annotations/{split}/")
    return SegPairs(pairs, names, problems)


def read_label(path: str, num_classes: int) -> np.ndarray:
    """A label map as (H, W) uint8 class indices after reduce-zero-label (255 = ignore); ValueError if it holds a
    class beyond `num_classes`."""
    with Image.open(path) as f:
        if f.mode not in ("L", "P"):
            raise ValueError(f"label map mode {f.mode}, not 8-bit class indices (L or P)")
        raw = np.asarray(f, dtype=np.uint8)
    label = raw.astype(np.int16) - 1
    label[raw == 0] = IGNORE_INDEX
    top = int(label[label != IGNORE_INDEX].max(initial=-1))
    if top >= num_classes:
        raise ValueError(f"label value {top + 1} is beyond the {num_classes} classes (classes.txt / --num-classes)")
    return label.astype(np.uint8)


class SegmentationDataset(Dataset):
    """(image, label map) pairs read as (RGB PIL image, (H, W) uint8 labels) and passed through
    `transform(image, label)`. An unreadable pair gives (BadImage, None) in 'skip' mode, a BadImageError else."""

    def __init__(
        self,
        pairs: Sequence[Tuple[str, str]],
        num_classes: int,
        transform: Optional[Callable[[Image.Image, np.ndarray], Any]] = None,
        bad_images: str = "skip",
    ):
        self.pairs = list(pairs)
        self.num_classes = num_classes
        self.transform = transform
        self.bad_images = bad_images

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Tuple[Any, Any]:
        img_path, lab_path = self.pairs[index]
        where = img_path
        try:
            img = load_rgb(img_path)
            where = lab_path
            label = read_label(lab_path, self.num_classes)
            if label.shape != (img.height, img.width):
                raise ValueError(f"label map is {label.shape[1]}x{label.shape[0]}, the image {img.width}x{img.height}")
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            if self.bad_images == "error":
                raise BadImageError(
                    f"cannot use {where!r} ({describe_error(e)}): fix or remove it, or pass --bad-images skip"
                ) from None
            return BadImage(where, describe_error(e)), None
        if self.transform is not None:
            return self.transform(img, label)
        return img, label
