"""COCO mAP (pycocotools' COCOeval) and mIoU on cases whose answer is known."""

import math

import numpy as np
import pytest
import torch

from litvit.data.scenes import rle_encode
from litvit.tasks.dense_metrics import coco_map, confusion_matrix, detections_to_coco, miou

BOXES = {1: [[10, 10, 50, 40], [60, 20, 90, 80]], 2: [[5, 5, 25, 30]]}  # image id -> x1 y1 x2 y2
LABELS = {1: [0, 1], 2: [1]}
CATS = [4, 9]  # class i -> category id


def _gt(with_masks=False):
    anns = []
    for image_id, boxes in BOXES.items():
        for (x1, y1, x2, y2), label in zip(boxes, LABELS[image_id]):
            a = {"id": len(anns) + 1, "image_id": image_id, "category_id": CATS[label], "iscrowd": 0}
            a.update(bbox=[x1, y1, x2 - x1, y2 - y1], area=float((x2 - x1) * (y2 - y1)))
            if with_masks:
                mask = np.zeros((100, 100), bool)
                mask[y1:y2, x1:x2] = True
                a["segmentation"] = rle_encode(mask)
            anns.append(a)
    images = [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.png"} for i in BOXES]
    return {"images": images, "annotations": anns, "categories": [{"id": c, "name": str(c)} for c in CATS]}


def _detections(shift=0.0, with_masks=False):
    results = []
    for image_id, boxes in BOXES.items():
        b = torch.tensor(boxes, dtype=torch.float32) + shift
        out = {"boxes": b, "labels": torch.tensor(LABELS[image_id]), "scores": torch.ones(len(boxes))}
        if with_masks:
            masks = torch.zeros(len(boxes), 1, 100, 100)
            for k, (x1, y1, x2, y2) in enumerate(b.round().int().tolist()):
                masks[k, 0, y1:y2, x1:x2] = 0.9
            out["masks"] = masks
        results += detections_to_coco(out, image_id, CATS)
    return results


@pytest.mark.needs("pycocotools")
def test_perfect_boxes_score_one_and_shifted_ones_less():
    gt = _gt()
    assert math.isclose(coco_map(gt, _detections())["mAP"], 1.0)
    shifted = coco_map(gt, _detections(shift=4.0))
    assert 0.0 < shifted["mAP"] < 0.9 and shifted["mAP_50"] == 1.0  # still found at IoU 0.5, not at 0.95
    assert coco_map(gt, _detections(shift=60.0))["mAP"] == 0.0
    assert coco_map(gt, [])["mAP"] == 0.0


@pytest.mark.needs("pycocotools")
def test_wrong_class_scores_zero():
    wrong = [{**r, "category_id": CATS[0] if r["category_id"] == CATS[1] else CATS[1]} for r in _detections()]
    assert coco_map(_gt(), wrong)["mAP"] == 0.0


@pytest.mark.needs("pycocotools")
def test_perfect_masks_score_one():
    gt, dets = _gt(with_masks=True), _detections(with_masks=True)
    assert isinstance(dets[0]["segmentation"]["counts"], str)
    assert math.isclose(coco_map(gt, dets, "segm")["mAP"], 1.0)
    assert coco_map(gt, _detections(shift=6.0, with_masks=True), "segm")["mAP"] < 0.9


def test_results_are_coco_boxes_of_the_category_ids():
    out = {"boxes": torch.tensor([[1.0, 2.0, 4.0, 8.0]]), "labels": torch.tensor([1]), "scores": torch.tensor([0.5])}
    assert detections_to_coco(out, 7, CATS) == [{"image_id": 7, "category_id": 9, "bbox": [1, 2, 3, 6], "score": 0.5}]


def test_miou_of_known_maps():
    label = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255]])
    pred = torch.tensor([[0, 0, 1, 0], [0, 0, 1, 1], [2, 1, 2, 0]])
    conf = confusion_matrix(pred, label, 3)
    assert conf.sum() == 10  # the two ignored pixels are left out
    m = miou(conf)
    # class 0: 4 hit, 1 false positive -> 4/5; class 1: 3 hit, 1 missed, 1 false positive -> 3/5; class 2: 1/2
    assert np.allclose(m["IoU"], [4 / 5, 3 / 5, 1 / 2])
    assert math.isclose(m["mIoU"], (4 / 5 + 3 / 5 + 1 / 2) / 3) and math.isclose(m["aAcc"], 8 / 10)
    assert miou(confusion_matrix(label.clamp(max=2), label, 3))["mIoU"] == 1.0


def test_classes_absent_everywhere_do_not_count():
    label = torch.tensor([[0, 1], [1, 0]])
    m = miou(confusion_matrix(label, label, 4))  # classes 2 and 3 neither present nor predicted
    assert m["mIoU"] == 1.0 and math.isnan(m["IoU"][2])
