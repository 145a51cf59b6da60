"""The dense tasks' metrics: COCO mAP (pycocotools' COCOeval, the reference every detection paper reports) and
mean IoU from a confusion matrix (mmseg's definition). Plain functions of predictions and ground truth, testable on
known cases; the tasks gather the predictions of every rank before calling them."""

import contextlib
import io
from typing import Any, Dict, List, Sequence

import numpy as np
import torch

from .._coco import coco_api, mask_api

__all__ = ["COCO_STATS", "coco_map", "confusion_matrix", "detections_to_coco", "miou"]

# The names of COCOeval's 12 summary numbers.
COCO_STATS = ("mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l", "AR_1", "AR_10", "AR_100", "AR_s", "AR_m", "AR_l")


def detections_to_coco(
    output: Dict[str, torch.Tensor], image_id: int, category_ids: Sequence[int], mask_threshold: float = 0.5
) -> List[Dict[str, Any]]:
    """One image's detections {boxes (x1, y1, x2, y2), labels 0-based, scores[, masks (N, 1, H, W)]} as COCO
    results (boxes as x, y, w, h; masks binarised at `mask_threshold` and run-length encoded)."""
    boxes = output["boxes"].detach().float().cpu()
    labels = output["labels"].detach().cpu().tolist()
    scores = output["scores"].detach().float().cpu().tolist()
    rles: List[Any] = [None] * len(labels)
    if "masks" in output and len(labels):
        m = mask_api()
        binary = (output["masks"].detach().float().cpu()[:, 0] >= mask_threshold).numpy().astype(np.uint8)
        rles = []
        for one in binary:
            rle = m.encode(np.asfortranarray(one))
            rle["counts"] = rle["counts"].decode("ascii")  # plain text: pickles and prints
            rles.append(rle)
    out = []
    for (x1, y1, x2, y2), label, score, rle in zip(boxes.tolist(), labels, scores, rles):
        res = {"image_id": image_id, "category_id": category_ids[label], "bbox": [x1, y1, x2 - x1, y2 - y1]}
        res["score"] = score
        if rle is not None:
            res["segmentation"] = rle
        out.append(res)
    return out


def coco_map(gt: Dict[str, Any], results: List[Dict[str, Any]], iou_type: str = "bbox") -> Dict[str, float]:
    """COCOeval's 12 summary numbers ({'mAP': AP@[.5:.95], 'mAP_50', ...}, fractions in [0, 1]) of `results`
    against the COCO-format ground truth `gt`; no detection at all scores 0."""
    if not results:
        return {k: 0.0 for k in COCO_STATS}
    COCO, COCOeval = coco_api()
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and tables
        truth = COCO()
        truth.dataset = {"info": {}, **gt}
        truth.createIndex()
        preds = truth.loadRes([dict(r) for r in results])  # loadRes adds fields to what it is given
        ev = COCOeval(truth, preds, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {k: max(0.0, float(v)) for k, v in zip(COCO_STATS, ev.stats)}  # -1 (no such object) counts as 0


def confusion_matrix(
    pred: torch.Tensor, label: torch.Tensor, num_classes: int, ignore_index: int = 255
) -> torch.Tensor:
    """(num_classes, num_classes) int64 counts, rows = true class, columns = predicted; ignored pixels left out."""
    keep = label != ignore_index
    index = label[keep].long() * num_classes + pred[keep].long()
    return torch.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def miou(conf: torch.Tensor) -> Dict[str, Any]:
    """{'mIoU', 'aAcc', 'IoU' (per class, NaN where the class is neither present nor predicted)} of a confusion
    matrix; the mean is over the classes with a defined IoU, as mmseg's (nanmean)."""
    conf = conf.double()
    inter = conf.diag()
    union = conf.sum(0) + conf.sum(1) - inter
    iou = inter / union  # 0 / 0 = NaN: a class absent from both
    valid = ~torch.isnan(iou)
    return {
        "mIoU": float(iou[valid].mean()) if valid.any() else 0.0,
        "aAcc": float(inter.sum() / conf.sum().clamp(min=1)),
        "IoU": iou.tolist(),
    }
