"""The COCO reader checks every annotation at the boundary: each bad kind is skipped and named, or refused with
`bad_annotations='error'`; boxes reaching outside their image are clipped; a file that is not COCO is refused."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from litvit.data.coco import read_coco
from litvit.data.detection import DetectionDataset
from litvit.data.folder import BadImage
from litvit.errors import DataError, DataNotFoundError

W, H = 40, 30


def _full_rle(w=W, h=H):
    return {"size": [h, w], "counts": [0, w * h]}


def make_coco(root, annotations, images=None, categories=None, split="train", masks=True):
    """root/annotations/instances_<split>.json and root/<split>/<i>.png (W x H)."""
    images = (
        images if images is not None else [{"id": i, "file_name": f"{i}.png", "width": W, "height": H} for i in (1, 2)]
    )
    categories = categories if categories is not None else [{"id": 7, "name": "seven"}, {"id": 3, "name": "three"}]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / split).mkdir(exist_ok=True)
    for im in images:
        Image.fromarray(np.full((H, W, 3), 100, np.uint8)).save(root / split / im["file_name"])
    anns = []
    for k, a in enumerate(annotations):
        a = {"id": k + 1, "iscrowd": 0, **a}
        if masks and "segmentation" not in a:
            a["segmentation"] = _full_rle()
        anns.append(a)
    data = {"images": images, "annotations": anns, "categories": categories}
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
    return root


GOOD = [
    {"image_id": 1, "category_id": 7, "bbox": [2, 3, 10, 8]},
    {"image_id": 2, "category_id": 3, "bbox": [0, 0, 5, 5]},
]


def test_good_file_classes_in_id_order(tmp_path):
    coco = read_coco(str(make_coco(tmp_path, GOOD)), "train", training=True, with_masks=True, bad_annotations="error")
    assert coco.classes == ["three", "seven"] and coco.category_ids == [3, 7]  # class i = i-th id, ascending
    assert coco.images[0]["boxes"] == [[2, 3, 12, 11]] and coco.images[0]["labels"] == [1]
    assert coco.images[1]["labels"] == [0]
    assert not coco.problems and coco.notes("x") == []


@pytest.mark.parametrize(
    "bad, reason",
    [
        ({"image_id": 1, "category_id": 99, "bbox": [1, 1, 5, 5]}, "unknown category id 99"),
        ({"image_id": 42, "category_id": 7, "bbox": [1, 1, 5, 5]}, "unknown image id 42"),
        ({"image_id": 1, "category_id": 7, "bbox": [1, 1, 0, 5]}, "zero-area box"),
        ({"image_id": 1, "category_id": 7, "bbox": [50, 1, 5, 5]}, "zero-area box"),  # wholly outside
        ({"image_id": 1, "category_id": 7, "bbox": [1, 1, 5]}, "is not four finite numbers"),
        ({"image_id": 1, "category_id": 7, "bbox": [1, 1, 5, float("nan")]}, "is not four finite numbers"),
        ({"image_id": 1, "category_id": 7, "bbox": [1, 1, 5, 5], "segmentation": []}, "missing mask"),
        ({"image_id": 1, "category_id": 7, "bbox": [1, 1, 5, 5], "segmentation": _full_rle(20, 20)}, "20x20"),
        ({"image_id": 1, "category_id": 7, "bbox": [1, 1, 5, 5], "segmentation": [[1, 2]]}, "mask polygons"),
        ({"image_id": 1, "category_id": 7, "bbox": [1, 1, 5, 5], "area": "big"}, "area 'big' is not"),
        ({"image_id": 1, "category_id": 7, "bbox": [1, 1, 5, 5], "area": -3}, "area -3 is not"),
        # RLE run lengths pycocotools raises on in a loader worker (negative, past the image, not a COCO string) or
        # decodes from memory it never wrote (short, empty): each is named at the scan
        *[
            (
                {"image_id": 1, "category_id": 7, "bbox": [1, 1, 5, 5], "segmentation": {"size": [H, W], "counts": c}},
                "RLE 'counts' are not run lengths",
            )
            for c in ([5, -3, W * H - 2], [W * H + 5], [3, 5], [], "!!garbage", "", 7)
        ],
    ],
)
def test_each_bad_annotation_is_skipped_or_refused(tmp_path, bad, reason):
    root = str(make_coco(tmp_path, [*GOOD, bad]))
    coco = read_coco(root, "train", training=True, with_masks=True, bad_annotations="skip")
    assert len(coco.problems) == 1 and reason in coco.problems[0][1]
    assert sum(len(im["boxes"]) for im in coco.images) == 2  # the good ones are kept
    assert reason in coco.notes("train annotations")[0] and "--bad-annotations error" in coco.notes("t")[0]
    with pytest.raises(DataError, match="--bad-annotations skip") as e:
        read_coco(root, "train", training=True, with_masks=True, bad_annotations="error")
    assert reason in str(e.value) and "\n" not in str(e.value)


def test_masks_are_only_checked_for_mask_models(tmp_path):
    bad = {"image_id": 1, "category_id": 7, "bbox": [1, 1, 5, 5], "segmentation": []}
    coco = read_coco(str(make_coco(tmp_path, [*GOOD, bad])), "train", True, with_masks=False, bad_annotations="error")
    assert sum(len(im["boxes"]) for im in coco.images) == 3


def test_boxes_outside_are_clipped(tmp_path):
    anns = [{"image_id": 1, "category_id": 7, "bbox": [-5, 20, 30, 40]}, GOOD[1]]
    coco = read_coco(str(make_coco(tmp_path, anns)), "train", True, bad_annotations="error")
    assert coco.images[0]["boxes"] == [[0, 20, 25, H]] and coco.clipped == 1
    assert coco.gt["annotations"][0]["bbox"] == [0, 20, 25, H - 20]
    assert "1 box(es) reached outside" in coco.notes("train")[0]


def test_images_without_objects(tmp_path):
    root = str(make_coco(tmp_path, GOOD[:1]))  # image 2 has no object
    train = read_coco(root, "train", training=True, bad_annotations="skip")
    assert [im["id"] for im in train.images] == [1] and "no object to train on" in train.problems[0][1]
    with pytest.raises(DataError, match="no object to train on"):
        read_coco(root, "train", training=True, bad_annotations="error")
    val = read_coco(root, "train", training=False, bad_annotations="error")  # evaluation keeps them
    assert [im["id"] for im in val.images] == [1, 2] and not val.problems


def test_compressed_rle_masks_are_read(tmp_path):
    """COCO's compressed RLE strings (what pycocotools' encode writes) pass the check and decode to their mask."""
    from pycocotools import mask as mask_api

    mask = np.zeros((H, W), np.uint8)
    mask[3:11, 2:12] = 1
    rle = mask_api.encode(np.asfortranarray(mask))
    seg = {"size": [H, W], "counts": rle["counts"].decode()}
    anns = [{**GOOD[0], "segmentation": seg}, GOOD[1]]
    coco = read_coco(str(make_coco(tmp_path, anns)), "train", True, with_masks=True, bad_annotations="error")
    item = DetectionDataset(coco, with_masks=True)[0][1]
    assert item["masks"].shape == (1, H, W) and (item["masks"][0].numpy() == mask).all()


def test_crowd_masks_are_checked_for_mask_models(tmp_path):
    """COCO's mask evaluation decodes crowd regions too: a bad one is skipped before it can stop an evaluation."""
    crowd = {
        "image_id": 1,
        "category_id": 3,
        "bbox": [20, 5, 10, 10],
        "iscrowd": 1,
        "segmentation": {"size": [H, W], "counts": [W * H + 1]},
    }
    root = str(make_coco(tmp_path, [*GOOD, crowd]))
    coco = read_coco(root, "train", True, with_masks=True, bad_annotations="skip")
    assert len(coco.gt["annotations"]) == 2 and "RLE 'counts'" in coco.problems[0][1]
    assert len(read_coco(root, "train", True, with_masks=False, bad_annotations="error").gt["annotations"]) == 3


def test_crowd_regions_are_ground_truth_only(tmp_path):
    crowd = {"image_id": 1, "category_id": 3, "bbox": [20, 5, 10, 10], "iscrowd": 1}
    coco = read_coco(str(make_coco(tmp_path, [*GOOD, crowd])), "train", True, bad_annotations="error")
    assert len(coco.images[0]["boxes"]) == 1 and len(coco.gt["annotations"]) == 3


@pytest.mark.parametrize(
    "text, match",
    [
        ("{not json", "cannot read"),
        (json.dumps({"images": [], "annotations": []}), "is not a COCO annotation file"),
        (json.dumps([1, 2]), "is not a COCO annotation file"),
        (json.dumps({"images": [], "annotations": [], "categories": [{"id": 1}, {"id": 1}]}), "category id twice"),
        (json.dumps({"images": [], "annotations": [], "categories": []}), "no categories"),
    ],
)
def test_files_that_are_not_coco_are_refused(tmp_path, text, match):
    make_coco(tmp_path, GOOD)
    (tmp_path / "annotations" / "instances_train.json").write_text(text)
    with pytest.raises(DataError, match=match):
        read_coco(str(tmp_path), "train", True)


def test_layout_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        read_coco(str(tmp_path / "nowhere"), "train", True)
    with pytest.raises(DataNotFoundError, match="instances_train.json"):
        read_coco(str(tmp_path), "train", True)
    make_coco(tmp_path, GOOD, split="val")
    (tmp_path / "annotations" / "instances_val2017.json").write_text("{}")
    assert read_coco(str(tmp_path), "val", False).image_dir == tmp_path / "val"


def test_other_classes_than_the_model_are_refused(tmp_path):
    with pytest.raises(DataError, match="other categories"):
        read_coco(str(make_coco(tmp_path, GOOD)), "train", False, classes=["three", "eight"])


@pytest.mark.needs("pycocotools")
def test_dataset_items_and_flip(tmp_path):
    coco = read_coco(str(make_coco(tmp_path, GOOD)), "train", True, with_masks=True)
    image, target = DetectionDataset(coco, with_masks=True)[0]
    assert image.shape == (3, H, W) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    assert target["boxes"].tolist() == [[2, 3, 12, 11]] and target["labels"].tolist() == [1]
    assert target["masks"].shape == (1, H, W) and target["masks"].dtype == torch.uint8
    _, flipped = DetectionDataset(coco, with_masks=True, hflip=1.0)[0]
    assert flipped["boxes"].tolist() == [[W - 12, 3, W - 2, 11]]


def test_image_of_another_size_than_declared_is_a_bad_image(tmp_path):
    coco = read_coco(str(make_coco(tmp_path, GOOD)), "train", True)
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "train" / "1.png")
    img, _ = DetectionDataset(coco)[0]
    assert isinstance(img, BadImage) and "the annotations say 40x30" in img.reason
    with pytest.raises(DataError, match="the annotations say 40x30"):
        DetectionDataset(coco, bad_images="error")[0]
