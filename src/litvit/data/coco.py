"""COCO-style detection data: `DIR/annotations/instances_{split}.json` (or `..._{split}2017.json`) with the images in
`DIR/{split}/` (or `DIR/{split}2017/`), read and checked once, before anything trains.

What the json says is checked at the boundary. A file that is not COCO (no `images` / `annotations` / `categories`
lists, duplicate ids) is refused. Each annotation problem (an unknown image or category id, a box that is not four
finite numbers, a box of zero area once clipped to its image, an area that is not a number >= 0, a missing,
mis-sized or undecodable mask (RLE run lengths that do not add up to the image), an image without objects in the
training split) is either skipped and reported in one summary line (`bad_annotations='skip'`, the
default) or stops the run (`'error'`); boxes reaching outside their image are clipped and counted. Class i is the
i-th category in increasing id order (mmdet's rule), for every architecture. Crowd regions (`iscrowd`) are not
trained on; they stay in the ground truth for COCO's evaluation, which ignores detections on them.
"""

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import DataError, DataNotFoundError
from ..options import BAD_IMAGE_MODES
from .problems import Problem, refuse_problems, skipped_note

__all__ = ["CocoSet", "decode_mask", "find_coco", "read_coco"]


@dataclass
class CocoSet:
    """A checked COCO split: the images to use, their trainable objects, and the ground truth for evaluation."""

    image_dir: Path
    classes: List[str]
    category_ids: List[int]  # category id of class i
    images: List[Dict[str, Any]]  # {'id', 'file_name', 'width', 'height', 'boxes' [[x1,y1,x2,y2]], 'labels', 'masks'}
    gt: Dict[str, Any]  # COCO-format ground truth of `images` (checked annotations, crowd regions included)
    problems: List[Problem] = field(default_factory=list)  # (where, what) of what was skipped
    clipped: int = 0  # boxes clipped to their image

    def notes(self, what: str) -> List[str]:
        """One-line warnings about what was clipped or skipped (for the run's log)."""
        out = []
        if self.clipped:
            out.append(f"{what}: {self.clipped} box(es) reached outside their image and were clipped to it")
        out += skipped_note(self.problems, what, "bad annotation(s) or image(s)", "fix the json")
        return out


def find_coco(root: str, split: str) -> Tuple[Path, Path]:
    """(annotation json, image folder) of `split` under `root`, or a DataError naming the layout litvit reads."""
    base = Path(root)
    if not base.is_dir():
        raise DataNotFoundError(
            f"data folder {root!r} does not exist: pass the COCO folder holding annotations/instances_{split}.json "
            f"and {split}/ (or leave --data out to train on the embedded scenes)"
        )
    for suffix in ("", "2017"):
        ann = base / "annotations" / f"instances_{split}{suffix}.json"
        if ann.is_file():
            for folder in (base / f"{split}{suffix}", base / "images" / f"{split}{suffix}"):
                if folder.is_dir():
                    return ann, folder
            raise DataNotFoundError(f"{str(ann)!r} has no image folder beside it: put its images in {base / split}/")
    raise DataNotFoundError(
        f"{root!r} has no annotations/instances_{split}.json (nor instances_{split}2017.json): --task det reads "
        f"COCO's layout, DIR/annotations/instances_{{train,val}}.json with the images in DIR/{{train,val}}/"
    )


def _load_json(path: Path) -> Dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(
            f"cannot read {str(path)!r} as json ({str(e).splitlines()[0]}): fix or replace the file"
        ) from None
    keys = ("images", "annotations", "categories")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in keys):
        raise DataError(
            f"{str(path)!r} is not a COCO annotation file (it needs 'images', 'annotations' and 'categories' lists): "
            "convert the annotations to COCO's format"
        )
    return data


def _categories(data: Dict[str, Any], path: Path) -> Tuple[List[int], List[str]]:
    ids, names = [], []
    for c in data["categories"]:
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or isinstance(c.get("id"), bool):
            raise DataError(f"{str(path)!r}: category {c!r} has no integer 'id': fix the categories list")
        ids.append(c["id"])
        names.append(str(c.get("name", c["id"])))
    if len(set(ids)) != len(ids):
        raise DataError(f"{str(path)!r} lists a category id twice: each category needs its own id")
    if not ids:
        raise DataError(f"{str(path)!r} has no categories: a detector needs at least one class")
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    return [ids[i] for i in order], [names[i] for i in order]


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _image_problem(im: Any) -> Optional[str]:
    if not isinstance(im, dict):
        return "not an object"
    if not isinstance(im.get("id"), int) or not isinstance(im.get("file_name"), str):
        return "no integer 'id' or no 'file_name'"
    w, h = im.get("width"), im.get("height")
    if not isinstance(w, int) or not isinstance(h, int) or w < 1 or h < 1:
        return "no positive integer 'width' / 'height'"
    return None


def _rle_runs(counts: Any) -> Optional[List[int]]:
    """The run lengths of an RLE's 'counts': a list of them, or COCO's compressed string (maskApi.c's rleFrString:
    5 bits per character from '0', 0x20 = more to come, 0x10 = negative, runs after the third as deltas from the run
    two before). None where they are not non-negative integers."""
    if isinstance(counts, list):
        ok = all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts)
        return counts if ok else None
    if not isinstance(counts, str):
        return None
    runs: List[int] = []
    value = shift = 0
    for ch in counts:
        c = ord(ch) - 48
        if not 0 <= c < 64:
            return None
        value |= (c & 0x1F) << shift
        shift += 5
        if c & 0x20:
            continue
        if c & 0x10:
            value -= 1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
        value = shift = 0
    return runs if shift == 0 and all(r >= 0 for r in runs) else None


def _mask_problem(seg: Any, width: int, height: int) -> Optional[str]:
    if seg is None or (isinstance(seg, list) and not seg):
        return "missing mask ('segmentation')"
    if isinstance(seg, dict):
        size = seg.get("size")
        if not isinstance(size, list) or len(size) != 2 or "counts" not in seg:
            return "mask is neither polygons nor an RLE with 'size' and 'counts'"
        if list(size) != [height, width]:
            return f"mask is {size[1]}x{size[0]}, its image {width}x{height}"
        runs = _rle_runs(seg["counts"])
        if runs is None or sum(runs) != height * width:
            # pycocotools would raise in a loader worker, or decode memory it never wrote (short or empty counts)
            return f"mask RLE 'counts' are not run lengths adding up to its {width}x{height} pixels"
        return None
    polygons = isinstance(seg, list) and all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 for p in seg)
    if polygons and all(_finite(v) for p in seg for v in p):
        return None
    return "mask polygons must be lists of x, y numbers (3 points or more)"


def read_coco(
    root: str,
    split: str,
    training: bool,
    with_masks: bool = False,
    bad_annotations: str = "skip",
    classes: Optional[Sequence[str]] = None,
) -> CocoSet:
    """The checked split (see the module docstring). `classes` (a trained model's) must equal the file's."""
    if bad_annotations not in BAD_IMAGE_MODES:
        raise DataError(f"bad_annotations must be one of {BAD_IMAGE_MODES}, got {bad_annotations!r}")
    ann_path, image_dir = find_coco(root, split)
    data = _load_json(ann_path)
    cat_ids, names = _categories(data, ann_path)
    if classes is not None and list(classes) != names:
        raise DataError(
            f"{str(ann_path)!r} has other categories ({len(names)}: {', '.join(names[:4])}, ...) than the model was "
            f"trained on ({len(classes)}: {', '.join(list(classes)[:4])}, ...): evaluate on data with the same classes"
        )
    label_of = {c: i for i, c in enumerate(cat_ids)}
    problems: List[Problem] = []
    images: Dict[int, Dict[str, Any]] = {}
    for k, im in enumerate(data["images"]):
        problem = _image_problem(im)
        if problem is None and im["id"] in images:
            problem = f"image id {im['id']} listed twice"
        if problem is not None:
            problems.append((f"images[{k}]", problem))
            continue
        images[im["id"]] = {
            "id": im["id"],
            "file_name": im["file_name"],
            "width": im["width"],
            "height": im["height"],
            "boxes": [],
            "labels": [],
            "masks": [],
        }
    gt_anns: List[Dict[str, Any]] = []
    clipped = 0
    for k, a in enumerate(data["annotations"]):
        where = f"annotation {a.get('id', k) if isinstance(a, dict) else k}"
        if not isinstance(a, dict):
            problems.append((where, "not an object"))
            continue
        im = images.get(a.get("image_id"))  # type: ignore[arg-type]
        box = a.get("bbox")
        if im is None:
            problems.append((where, f"unknown image id {a.get('image_id')!r}"))
            continue
        if a.get("category_id") not in label_of:
            problems.append((where, f"unknown category id {a.get('category_id')!r}"))
            continue
        if not (isinstance(box, list) and len(box) == 4 and all(_finite(v) for v in box)):
            problems.append((where, f"bbox {box!r} is not four finite numbers [x, y, w, h]"))
            continue
        area = a.get("area")
        if area is not None and not (_finite(area) and area >= 0):  # COCOeval's small / medium / large ranges
            problems.append((where, f"area {area!r} is not a non-negative number"))
            continue
        x1, y1, x2, y2 = box[0], box[1], box[0] + box[2], box[1] + box[3]
        cx1, cy1 = min(max(x1, 0.0), im["width"]), min(max(y1, 0.0), im["height"])
        cx2, cy2 = min(max(x2, 0.0), im["width"]), min(max(y2, 0.0), im["height"])
        if cx2 - cx1 < 1 or cy2 - cy1 < 1:  # mmdet drops boxes narrower or lower than a pixel
            problems.append((where, f"zero-area box {box!r} in image {im['id']} ({im['width']}x{im['height']})"))
            continue
        clipped += (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2)
        seg = a.get("segmentation")
        if with_masks:  # crowd regions too: COCO's mask evaluation decodes them
            problem = _mask_problem(seg, im["width"], im["height"])
            if problem is not None:
                problems.append((where, problem))
                continue
        entry = {
            "id": len(gt_anns) + 1,
            "image_id": im["id"],
            "category_id": a["category_id"],
            "bbox": [cx1, cy1, cx2 - cx1, cy2 - cy1],
            "area": float(a.get("area") or (cx2 - cx1) * (cy2 - cy1)),
            "iscrowd": int(bool(a.get("iscrowd"))),
        }
        if seg is not None:
            entry["segmentation"] = seg
        gt_anns.append(entry)
        if not entry["iscrowd"]:
            im["boxes"].append([cx1, cy1, cx2, cy2])
            im["labels"].append(label_of[a["category_id"]])
            im["masks"].append(seg)
    kept = list(images.values())
    if training:
        empty = [im for im in kept if not im["boxes"]]
        problems += [(f"image {im['file_name']}", "no object to train on") for im in empty]
        kept = [im for im in kept if im["boxes"]]
    fix = "fix the annotations"
    refuse_problems(problems, bad_annotations, repr(str(ann_path)), fix, "such annotations / images")
    if not kept:
        raise DataError(f"{str(ann_path)!r} has no usable image{' with objects' if training else ''}: check the file")
    kept_ids = {im["id"] for im in kept}
    gt = {
        "images": [{k: im[k] for k in ("id", "file_name", "width", "height")} for im in kept],
        "annotations": [a for a in gt_anns if a["image_id"] in kept_ids],
        "categories": [{"id": c, "name": n} for c, n in zip(cat_ids, names)],
    }
    return CocoSet(image_dir, names, cat_ids, kept, gt, problems, clipped)


def decode_mask(seg: Any, height: int, width: int) -> np.ndarray:
    """A COCO segmentation (polygons, RLE or uncompressed RLE) as a (height, width) uint8 0 / 1 mask."""
    from .._coco import mask_api

    m = mask_api()
    rles = m.frPyObjects(seg, height, width) if isinstance(seg, list) or isinstance(seg.get("counts"), list) else seg
    if isinstance(rles, list):
        rles = m.merge(rles)
    with warnings.catch_warnings():  # pycocotools < 2.1 under NumPy 2: a DeprecationWarning about __array__(copy)
        warnings.simplefilter("ignore", DeprecationWarning)
        return np.ascontiguousarray(m.decode(rles), dtype=np.uint8)
