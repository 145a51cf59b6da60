"""The embedded scenes: deterministic, and their annotations agree with each other (boxes enclose the masks, the
label maps equal the instance masks, the COCO and ADE layouts hold the same images)."""

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from litvit.data.coco import decode_mask, read_coco
from litvit.data.scenes import ensure_scenes, rle_encode, write_scenes


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return write_scenes(tmp_path_factory.mktemp("scenes"), size=64, counts=(12, 4))


def test_same_settings_same_files(scenes, tmp_path):
    again = write_scenes(tmp_path / "again", size=64, counts=(12, 4))
    assert _digest(again) == _digest(scenes)
    other = write_scenes(tmp_path / "other", size=64, counts=(12, 4), seed=1)
    assert _digest(other) != _digest(scenes)


@pytest.mark.needs("pycocotools")
def test_boxes_enclose_masks_and_label_maps_agree(scenes):
    coco = json.loads((scenes / "coco" / "annotations" / "instances_train.json").read_text())
    assert [c["name"] for c in coco["categories"]] == [str(d) for d in range(10)]
    by_image = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    assert len(by_image) == len(coco["images"]) == 12  # every scene has an object
    for im in coco["images"]:
        semantic = np.asarray(Image.open(scenes / "ade" / "annotations" / "training" / im["file_name"]))
        image = Image.open(scenes / "coco" / "train" / im["file_name"])
        assert image.size == (im["width"], im["height"]) == semantic.shape[::-1]
        linked = scenes / "ade" / "images" / "training" / im["file_name"]
        assert linked.read_bytes() == (scenes / "coco" / "train" / im["file_name"]).read_bytes()
        owned = np.zeros(semantic.shape, dtype=bool)
        for a in by_image[im["id"]]:
            mask = decode_mask(a["segmentation"], im["height"], im["width"]).astype(bool)
            x, y, w, h = a["bbox"]
            ys, xs = np.nonzero(mask)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)  # the tight box
            assert a["area"] == mask.sum()
            assert not (owned & mask).any()  # instances never overlap
            owned |= mask
            assert (semantic[mask] == a["category_id"] + 1).all()  # digit d is label 2 + d (category id d + 1)
        assert set(np.unique(semantic[~owned])) <= {0, 1}  # background (1) or an ignored rim (0)
        assert (semantic[~owned] == 1).mean() > 0.5


def test_reader_takes_every_scene(scenes):
    train = read_coco(str(scenes / "coco"), "train", training=True, with_masks=True, bad_annotations="error")
    assert len(train.images) == 12 and not train.problems and train.clipped == 0
    assert (scenes / "ade" / "classes.txt").read_text().split() == ["background", *map(str, range(10))]


@pytest.mark.needs("pycocotools")
def test_rle_round_trip():
    rng = np.random.default_rng(0)
    for shape in ((5, 7), (1, 1), (8, 3)):
        mask = rng.random(shape) > 0.5
        mask[0, 0] = True  # a mask starting with foreground: the counts begin with an empty run
        assert (decode_mask(rle_encode(mask), *shape) == mask).all()


def test_cache_is_built_once(tmp_path):
    first = ensure_scenes(size=32, counts=(2, 1), cache=tmp_path)
    stamp = (first / "coco" / "annotations" / "instances_val.json").stat().st_mtime_ns
    assert ensure_scenes(size=32, counts=(2, 1), cache=tmp_path) == first
    assert (first / "coco" / "annotations" / "instances_val.json").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary folder left
