"""ImageFolder trees (`root/<split>/<class>/<image>`), checked at the boundary, and their dataset.

The tree is scanned once (names only, no image is opened): missing or empty folders, class folders without images
and train / val class mismatches are reported before anything trains. Images that turn out to be unreadable while
training are skipped and counted (default) or stop the run (`bad_images='error'`); grayscale, palette, CMYK and
alpha images are converted to RGB.
"""

import os
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from PIL import Image, ImageOps, UnidentifiedImageError
from timm.data.readers.img_extensions import get_img_extensions
from torch.utils.data import Dataset

from ..errors import BadImageError, DataError, DataNotFoundError
from ..options import BAD_IMAGE_MODES

Sample = Tuple[str, int]


def image_extensions() -> Tuple[str, ...]:
    """File endings counted as images: timm's list plus the other formats Pillow reads that datasets ship."""
    return tuple(sorted(set(get_img_extensions()) | {".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}))


def _visible(entries: Sequence[os.DirEntry]) -> List[os.DirEntry]:
    return [e for e in entries if not e.name.startswith(".")]


def _some(names: Sequence[str], n: int = 5) -> str:
    names = list(names)
    return ", ".join(names[:n]) + (f", ... ({len(names) - n} more)" if len(names) > n else "")


def scan_split(root: Path, split: str) -> Tuple[List[Sample], List[str]]:
    """The (path, class index) samples and sorted class names of `root/split`, or a DataError saying what is wrong."""
    folder = root / split
    if not folder.is_dir():
        raise DataNotFoundError(
            f"{str(folder)!r} does not exist: --data needs {split}/ beside the other split, laid out as "
            f"{root}/{split}/<class name>/<image>"
        )
    with os.scandir(folder) as it:
        entries = _visible(list(it))
    class_dirs = sorted(e.name for e in entries if e.is_dir())
    loose = [e.name for e in entries if e.is_file() and e.name.lower().endswith(image_extensions())]
    if not class_dirs:
        what = f"images directly in it ({_some(loose, 3)})" if loose else "nothing"
        raise DataError(
            f"{str(folder)!r} has no class folders ({what}): put each class's images in a folder of its own, "
            f"{folder}/<class name>/<image>"
        )
    exts = image_extensions()
    samples: List[Sample] = []
    empty: List[str] = []
    for index, name in enumerate(class_dirs):
        files = []
        for dirpath, dirnames, filenames in os.walk(folder / name, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            files += [os.path.join(dirpath, f) for f in sorted(filenames) if f.lower().endswith(exts)]
        if not files:
            empty.append(name)
        samples += [(f, index) for f in files]
    if empty:
        raise DataError(
            f"{len(empty)} class folder(s) in {str(folder)!r} hold no images ({_some(empty)}): add images "
            f"({', '.join(exts)}) or remove the folder(s)"
        )
    return samples, class_dirs


def scan_image_folder(root: str, train_split: str = "train", val_split: str = "val") -> Dict[str, Any]:
    """Check `root` and return {'train': samples, 'val': samples, 'classes': names}; the two splits must name the
    same classes, so that an index means the same class in both."""
    path = Path(root)
    if not path.exists():
        raise DataNotFoundError(
            f"data folder {root!r} does not exist: pass the folder that holds {train_split}/ and "
            f"{val_split}/ (or leave --data out to train on the embedded digits)"
        )
    if not path.is_dir():
        raise DataError(f"--data {root!r} is a file: pass the folder that holds {train_split}/ and {val_split}/")
    train, classes = scan_split(path, train_split)
    val, val_classes = scan_split(path, val_split)
    if classes != val_classes:
        only_train = sorted(set(classes) - set(val_classes))
        only_val = sorted(set(val_classes) - set(classes))
        parts = []
        if only_train:
            parts.append(f"only in {train_split}/: {_some(only_train)}")
        if only_val:
            parts.append(f"only in {val_split}/: {_some(only_val)}")
        raise DataError(
            f"the class folders of {train_split}/ and {val_split}/ in {root!r} differ ({'; '.join(parts)}): "
            "both splits need the same class folders"
        )
    return {"train": train, "val": val, "classes": classes, "root": root}


def upright(img: Image.Image) -> Image.Image:
    """`img` turned as its EXIF orientation tag says: a phone stores a portrait photo sideways with a tag that photo
    viewers follow. No tag, or an unreadable EXIF block (the pixels are still good), leaves it as it is."""
    try:
        with warnings.catch_warnings():  # PIL warns "Corrupt EXIF data" before giving up on a block
            warnings.simplefilter("ignore")
            return ImageOps.exif_transpose(img) if img.getexif().get(0x0112, 1) != 1 else img
    except Exception:  # PIL raises many kinds (SyntaxError, struct.error, KeyError, ...) on a corrupt EXIF block
        return img


def load_rgb(path: str, exif_orientation: bool = False) -> Image.Image:
    """Open an image as RGB: grayscale, palette (with or without transparency), CMYK, 16-bit and alpha images are
    converted (alpha is dropped, as torchvision's and timm's loaders do). `exif_orientation` turns it upright as a
    photo viewer shows it (`litvit predict`, `viz`, `demo`); training and evaluation read the pixels as stored, as
    timm's and the official loaders do."""
    with open(path, "rb") as f:
        with warnings.catch_warnings():  # 89-179 MP (a panorama) reads fine; PIL's two-line "DOS attack?" note is noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(f)
        if exif_orientation:
            img = upright(img)
        if img.mode == "P" and "transparency" in img.info:
            img = img.convert("RGBA")
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            img = img.point(lambda v: v * (1 / 256)).convert("L")
        return img.convert("RGB")  # convert() loads the pixels, so decoding errors surface here


class BadImage:
    """What a dataset yields for an image it could not read (`bad_images='skip'`); the loader's collate drops it."""

    __slots__ = ("path", "reason")

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason


def describe_error(e: BaseException) -> str:
    if isinstance(e, UnidentifiedImageError):
        return "not an image Pillow can read (empty, corrupt or another format)"
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}".rstrip(": ")


class ImageFileDataset(Dataset):
    """(path, class) samples read as RGB PIL images and passed through `transform(img)`.

    `__getitem__` returns (image, target) or, for an unreadable file in 'skip' mode, (BadImage, target); in 'error'
    mode it raises a BadImageError that names the file.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        classes: Sequence[str],
        transform: Optional[Callable[[Image.Image], Any]] = None,
        bad_images: str = "skip",
        exif_orientation: bool = False,
    ):
        if bad_images not in BAD_IMAGE_MODES:
            raise DataError(f"bad_images must be one of {BAD_IMAGE_MODES}, got {bad_images!r}")
        self.exif_orientation = exif_orientation
        self.samples = list(samples)
        self.classes = list(classes)
        self.transform = transform
        self.bad_images = bad_images

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> Any:
        path, _ = self.samples[index]
        try:
            return load_rgb(path, self.exif_orientation)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            if self.bad_images == "error":
                raise BadImageError(
                    f"cannot read image {path!r} ({describe_error(e)}): replace or remove it, or pass "
                    "--bad-images skip to skip unreadable images"
                ) from None
            return BadImage(path, describe_error(e))

    def __getitem__(self, index: int) -> Tuple[Any, int]:
        img = self.load(index)
        if self.transform is not None and not isinstance(img, BadImage):
            img = self.transform(img)
        return img, self.samples[index][1]
