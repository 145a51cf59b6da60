"""Object detection and instance segmentation (RetinaNet, Faster / Mask R-CNN on LIT / LITv2 backbones) on COCO-style
data, scored by COCO's bbox mAP (and mask mAP for Mask R-CNN).

The models follow torchvision's convention (litvit.dense): given a list of (3, H, W) images in [0, 1] and their
targets they return a dict of losses; in eval mode, detections in the coordinates of the images they were given.
So the data pipeline only reads and flips images; resizing, normalisation and batching are the model's (its
min_size / max_size come from the run's img_size / max_size).
"""

import os
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from ..data.coco import CocoSet, read_coco
from ..data.detection import DetectionDataset
from ..data.loader import list_collate
from ..data.scenes import ensure_scenes
from ..errors import ConfigError, DataError, refused_settings
from ..runtime import all_gather_object, autocast, broadcast_object, seed_all
from . import TaskParts, unreadable_validation
from .dense_metrics import coco_map, detections_to_coco

__all__ = ["DetectionTask", "build_dense_model", "scenes_root"]

DEFAULT_SIZE = 800  # COCO: short side 800, long side at most 1333 (spec/DENSE.md section 3.1)


def scenes_root(cfg: Any, layout: str) -> str:
    """The embedded scenes (canvas = the run's img_size, 128 by default) in `layout` ('coco' or 'ade')."""
    return os.fspath(ensure_scenes(size=cfg.get("img_size") or 128) / layout)


def build_dense_model(cfg: Dict[str, Any], num_classes: int, load_pretrained: bool = True, **extra: Any) -> nn.Module:
    """litvit.dense.create_dense_model with the run's class count, model keywords, drop path and `--pretrained`
    file (ImageNet weights, official or litvit, for the backbone: how the papers' dense models start); `cfg` is a
    run's configuration as a dict (a checkpoint's, for `litvit eval`)."""
    from ..dense import create_dense_model

    kwargs = {**extra, **dict(cfg.get("model_kwargs") or {})}
    if cfg.get("drop_path") is not None:
        kwargs["backbone_kwargs"] = {**kwargs.get("backbone_kwargs", {}), "drop_path_rate": cfg["drop_path"]}
    backbone = cfg.get("pretrained") if load_pretrained else None
    if backbone and not os.path.isfile(backbone):
        raise ConfigError(f"--pretrained {backbone!r} does not exist: pass ImageNet weights (official or litvit)")
    if backbone:
        kwargs["pretrained_backbone"] = backbone
    with refused_settings(cfg["model"]):
        return create_dense_model(cfg["model"], num_classes, **kwargs)


def with_masks(model_name: str) -> bool:
    return "mask" in model_name.split(".")[0]


def size_kwargs(cfg: Dict[str, Any]) -> Dict[str, int]:
    """The detector's resize: short side img_size (800), long side at most max_size (1333 / 800 of the short)."""
    short = cfg.get("img_size") or DEFAULT_SIZE
    return {"min_size": short, "max_size": cfg.get("max_size") or round(short * 1333 / 800)}


class DetectionTask:
    """Detection on COCO-style data (or the embedded scenes); score: COCO bbox mAP@[.5:.95], in percent."""

    name = "detection"
    score = "bbox_mAP"
    score_label = "bbox mAP"

    def __init__(self, channels_last: bool = False):
        self.channels_last = channels_last  # unused: detectors take lists of images
        self.val: Optional[CocoSet] = None

    def build(self, cfg: Any, rank: int, labels: Optional[List[str]] = None) -> TaskParts:
        if cfg.data is not None:  # stored absolute, so that `litvit eval RUN` works from any folder
            cfg.data = os.path.abspath(cfg.data)
        root = cfg.data or scenes_root(vars(cfg), "coco")
        masks = with_masks(cfg.model)
        train = read_coco(root, cfg.train_split, True, masks, cfg.bad_annotations, labels)
        val_set = self.eval_set(cfg, train.classes)
        if cfg.num_classes is not None and cfg.num_classes != len(train.classes):
            raise ConfigError(
                f"--num-classes {cfg.num_classes}, but the data has {len(train.classes)} categories: drop "
                "--num-classes (the data decides)"
            )
        seed_all(cfg.seed)
        run_cfg = vars(cfg)
        model = build_dense_model(run_cfg, len(train.classes), labels is None, **size_kwargs(run_cfg))
        train_set = DetectionDataset(train, masks, cfg.hflip, cfg.bad_images)
        where = cfg.data or "the embedded scenes"
        desc = f"{where} ({len(train_set)} train / {len(val_set)} val images, {len(train.classes)} classes)"
        assert self.val is not None
        notes = train.notes(f"{cfg.train_split} annotations") + self.val.notes(f"{cfg.val_split} annotations")
        size = size_kwargs(run_cfg)["min_size"]
        record = {"with_masks": masks, "data_root": root, **size_kwargs(run_cfg)}
        return TaskParts(model, train_set, val_set, list_collate, train.classes, desc, size, record, notes)

    def eval_set(self, cfg: Any, classes: Optional[List[str]]) -> DetectionDataset:
        """The validation images of `cfg.data` (None: the embedded scenes), split `cfg.val_split`; `classes` (the
        model's) must equal the data's categories."""
        root = cfg.data or scenes_root(vars(cfg), "coco")
        masks = with_masks(cfg.model)
        self.val = read_coco(root, cfg.val_split, False, masks, cfg.bad_annotations, classes)
        return DetectionDataset(self.val, masks, 0.0, cfg.bad_images)

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> Tuple[torch.Tensor, int]:
        images, targets, _ = batch
        images = [x.to(device, non_blocking=True) for x in images]
        keys = ("boxes", "labels", "masks")
        targets = [{k: t[k].to(device, non_blocking=True) for k in keys if k in t} for t in targets]
        losses = model(images, targets)
        return sum(losses.values()), len(images)  # type: ignore[return-value]

    def evaluate(self, model: nn.Module, loader: Any, device: torch.device, amp: Optional[torch.dtype]) -> Dict:
        if self.val is None:
            raise DataError("the detection task has no validation set: build() it first")
        return evaluate_detection(model, loader, device, amp, self.val)

    def metrics_line(self, metrics: Dict[str, Any]) -> str:
        return detection_line(metrics)


def detection_line(metrics: Dict[str, Any]) -> str:
    line = f"val bbox mAP {metrics['bbox_mAP']:.1f}  AP50 {metrics['bbox_mAP_50']:.1f}"
    if "segm_mAP" in metrics:
        line += f"  mask mAP {metrics['segm_mAP']:.1f}"
    if "ema_bbox_mAP" in metrics:
        line += f"  EMA {metrics['ema_bbox_mAP']:.1f}"
    return line


@torch.no_grad()
def evaluate_detection(
    model: nn.Module, loader: Any, device: torch.device, amp: Optional[torch.dtype], val: CocoSet
) -> Dict[str, Any]:
    """COCO mAP of the model's detections on every rank's share of `val` ({'bbox_mAP', 'bbox_mAP_50', ...,
    'segm_mAP', ... in percent, 'images', 'bad'}); rank 0 runs COCOeval on the images that were read."""
    was_training = model.training
    model.eval()
    results: List[Dict[str, Any]] = []
    seen: List[int] = []
    bad: List[Tuple[str, str]] = []
    masks = False
    for images, targets, bad_here in loader:
        bad += bad_here
        if not images:
            continue
        with autocast(device, amp):
            outputs = model([x.to(device, non_blocking=True) for x in images])
        for out, target in zip(outputs, targets):
            masks = masks or "masks" in out
            results += detections_to_coco(out, target["image_id"], val.category_ids)
            seen.append(target["image_id"])
    model.train(was_training)
    everyone = all_gather_object((results, seen, bad, masks))
    results = [r for part in everyone for r in part[0]]
    seen_ids = {i for part in everyone for i in part[1]}
    bad = [b for part in everyone for b in part[2]]
    masks = any(part[3] for part in everyone)
    if not seen_ids:
        raise unreadable_validation(bad)
    scores: Optional[Dict[str, float]] = None
    if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
        gt = {
            "images": [im for im in val.gt["images"] if im["id"] in seen_ids],
            "annotations": [a for a in val.gt["annotations"] if a["image_id"] in seen_ids],
            "categories": val.gt["categories"],
        }
        scores = {f"bbox_{k}": 100.0 * v for k, v in coco_map(gt, results, "bbox").items()}
        if masks:
            scores.update({f"segm_{k}": 100.0 * v for k, v in coco_map(gt, results, "segm").items()})
    scores = broadcast_object(scores)
    return {**scores, "images": len(seen_ids), "detections": len(results), "bad": bad}
