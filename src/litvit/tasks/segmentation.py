"""Semantic segmentation (Semantic FPN on LIT / LITv2 backbones) on ADE20K-style data, scored by mean IoU.

The segmenter maps (N, 3, H, W) ImageNet-normalised images to (N, K, H, W) logits. Training follows mmseg 0.13's
ADE20K recipe (random rescale, crop with cat_max_ratio, flip, photometric distortion; cross-entropy averaged over
all pixels, ignored ones counting as 0, spec/DENSE.md section 2.4); evaluation resizes each whole image to the test
scale, upsamples the logits to the label map's own size and accumulates a confusion matrix over every rank.
"""

import os
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..data.ade import IGNORE_INDEX, SegmentationDataset, scan_ade
from ..data.loader import list_collate
from ..data.seg_transforms import SegEvalTransform, SegTrainTransform
from ..errors import ConfigError
from ..runtime import all_gather_object, all_reduce_sum, autocast, seed_all
from . import TaskParts, unreadable_validation
from .dense_metrics import confusion_matrix, miou
from .detection import build_dense_model, scenes_root

__all__ = ["SegmentationTask", "ade_split", "evaluate_segmentation", "seg_scale"]

DEFAULT_CROP = 512  # ADE20K: 512 x 512 crops, test scale (2048, 512)


def ade_split(split: str) -> str:
    """The ADE20K folder of a split: the run's default train / val mean training / validation."""
    return {"train": "training", "val": "validation"}.get(split, split)


def seg_scale(cfg: Dict[str, Any]) -> Tuple[int, int]:
    """(long, short) of the resize: (max_size, img_size), by default (4 x crop, crop) = ADE20K's (2048, 512)."""
    crop = cfg.get("img_size") or DEFAULT_CROP
    return (cfg.get("max_size") or 4 * crop, crop)


def seg_loss(logits: torch.Tensor, labels: torch.Tensor, class_weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """mmseg 0.13's cross-entropy: per pixel (times its class's weight, if given), averaged over all pixels (ignored
    ones count as 0)."""
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    if class_weight is not None:
        class_weight = class_weight.to(logits.device)
    per_pixel = F.cross_entropy(logits.float(), labels, class_weight, ignore_index=IGNORE_INDEX, reduction="none")
    return per_pixel.mean()


class SegmentationTask:
    """Segmentation on ADE20K-style data (or the embedded scenes); score: mIoU in percent."""

    name = "segmentation"
    score = "mIoU"
    score_label = "mIoU"

    def __init__(self, channels_last: bool = False):
        self.channels_last = channels_last
        self.val_notes: List[str] = []
        self.class_weight: Optional[torch.Tensor] = None  # the training loss's (cfg.class_weight), set by build

    def build(self, cfg: Any, rank: int, labels: Optional[List[str]] = None) -> TaskParts:
        if cfg.data is not None:
            cfg.data = os.path.abspath(cfg.data)
        run_cfg = vars(cfg)
        root = cfg.data or scenes_root(run_cfg, "ade")
        train_split = ade_split(cfg.train_split)
        train = scan_ade(root, train_split, cfg.bad_annotations, cfg.num_classes, labels)
        val_set = self.eval_set(cfg, train.classes)
        k = len(train.classes)
        if cfg.class_weight and len(cfg.class_weight) != k:
            raise ConfigError(
                f"class_weight has {len(cfg.class_weight)} values for {k} classes ({', '.join(train.classes[:3])}, "
                "...): give one per class, or none"
            )
        self.class_weight = torch.tensor(cfg.class_weight, dtype=torch.float32) if cfg.class_weight else None
        seed_all(cfg.seed)
        model = build_dense_model(run_cfg, k, labels is None)
        crop, scale = cfg.img_size or DEFAULT_CROP, seg_scale(run_cfg)
        augment = SegTrainTransform(crop, scale, cfg.ratio_range, cfg.cat_max_ratio, cfg.hflip, cfg.photometric)
        train_set = SegmentationDataset(train.pairs, k, augment, cfg.bad_images)
        where = cfg.data or "the embedded scenes"
        desc = f"{where} ({len(train_set)} train / {len(val_set)} val images, {k} classes)"
        notes = train.notes(f"{train_split} label maps") + self.val_notes
        record = {"data_root": root, "crop": crop, "scale": list(scale)}
        return TaskParts(model, train_set, val_set, list_collate, train.classes, desc, crop, record, notes)

    def eval_set(self, cfg: Any, classes: Optional[List[str]]) -> SegmentationDataset:
        """The validation pairs of `cfg.data` (None: the embedded scenes), split `cfg.val_split` (val = ADE's
        validation/), at the test scale; `classes` (the model's) must equal the data's."""
        root = cfg.data or scenes_root(vars(cfg), "ade")
        split = ade_split(cfg.val_split)
        val = scan_ade(root, split, cfg.bad_annotations, len(classes) if classes else cfg.num_classes, classes)
        self.val_notes = val.notes(f"{split} label maps")
        return SegmentationDataset(val.pairs, len(val.classes), SegEvalTransform(seg_scale(vars(cfg))), cfg.bad_images)

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> Tuple[torch.Tensor, int]:
        images, labels, _ = batch
        x = torch.stack(images).to(device, non_blocking=True)  # crops padded to one size: (N, 3, crop, crop)
        y = torch.stack(labels).to(device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = model(x)
        if isinstance(out, dict):  # Semantic FPN with an auxiliary head (aux_weight > 0), in training
            aux_weight = getattr(model, "module", model).aux_weight  # through DDP
            loss = seg_loss(out["out"], y, self.class_weight) + aux_weight * seg_loss(out["aux"], y, self.class_weight)
            return loss, x.shape[0]
        return seg_loss(out, y, self.class_weight), x.shape[0]

    def evaluate(self, model: nn.Module, loader: Any, device: torch.device, amp: Optional[torch.dtype]) -> Dict:
        return evaluate_segmentation(model, loader, device, amp, self.channels_last)

    def metrics_line(self, metrics: Dict[str, Any]) -> str:
        return segmentation_line(metrics)


def segmentation_line(metrics: Dict[str, Any]) -> str:
    ema = f"  EMA {metrics['ema_mIoU']:.1f}" if "ema_mIoU" in metrics else ""
    return f"val mIoU {metrics['mIoU']:.1f}  aAcc {metrics['aAcc']:.1f}{ema}"


def _groups(images: List[torch.Tensor], labels: List[torch.Tensor]) -> List[Tuple[torch.Tensor, List[torch.Tensor]]]:
    """Batches of same-size images (whole-image evaluation: sizes differ on real data)."""
    if all(x.shape == images[0].shape for x in images):
        return [(torch.stack(images), labels)]
    return [(x[None], [y]) for x, y in zip(images, labels)]


@torch.no_grad()
def evaluate_segmentation(
    model: nn.Module, loader: Any, device: torch.device, amp: Optional[torch.dtype], channels_last: bool = False
) -> Dict[str, Any]:
    """{'mIoU', 'aAcc' (percent), 'IoU' (per class, percent), 'loss', 'images', 'bad'} over every rank; the
    prediction is compared with each label map at its own size."""
    was_training = model.training
    model.eval()
    conf: Optional[torch.Tensor] = None
    stats = torch.zeros(2, dtype=torch.float64)  # summed per-image loss, images
    bad: List[Tuple[str, str]] = []
    for images, labels, bad_here in loader:
        bad += bad_here
        for x, ys in _groups(images, labels) if images else []:
            x = x.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, amp):
                logits = model(x)
            for one, y in zip(logits.float(), ys):
                y = y.to(device)
                up = F.interpolate(one[None], size=y.shape, mode="bilinear", align_corners=False)  # (1, K, H, W)
                stats += torch.tensor([seg_loss(up, y[None]).item(), 1.0], dtype=torch.float64)
                here = confusion_matrix(up.argmax(1)[0], y, up.shape[1], IGNORE_INDEX).cpu()
                conf = here if conf is None else conf + here
    model.train(was_training)
    everyone_bad = [b for part in all_gather_object(bad) for b in part]
    k = max(all_gather_object(conf.shape[0] if conf is not None else 0))
    if k == 0:
        raise unreadable_validation(everyone_bad)
    conf = conf if conf is not None else torch.zeros(k, k, dtype=torch.int64)
    conf = all_reduce_sum(conf.to(device)).cpu()
    stats = all_reduce_sum(stats.to(device)).cpu()
    m = miou(conf)
    n = int(stats[1].item())
    return {
        "mIoU": 100.0 * m["mIoU"],
        "aAcc": 100.0 * m["aAcc"],
        "IoU": [round(100.0 * v, 4) if v == v else None for v in m["IoU"]],
        "loss": stats[0].item() / max(n, 1),
        "images": n,
        "bad": everyone_bad,
    }
