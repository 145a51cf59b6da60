"""Image classification: timm models (litvit's or any other), timm's transforms / mixup / losses, top-1 / top-5.

Everything else a run needs (optimizer, schedule, precision, processes, checkpoints) belongs to the training loop.
"""

import difflib
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import timm
import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.utils import accuracy
from torch import nn

from ..data.build import classification_sets, scan_classes
from ..data.loader import collate
from ..data.transforms import data_config, eval_transform, train_transform
from ..errors import ConfigError, refused_settings
from ..runtime import all_gather_object, all_reduce_sum, autocast, seed_all
from . import TaskParts, unreadable_validation

__all__ = ["ClassificationTask", "build_model", "check_input_size", "check_model_name", "evaluate"]


def check_model_name(name: str) -> None:
    if not timm.is_model(name.split(".")[0]):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown model {name!r}{hint}: pass a timm model name such as litv2_s or litv2_nano")


def check_input_size(model: nn.Module, size: int, flag: str = "--img-size") -> None:
    """Refuse a resolution the model cannot run at, before anything starts (litvit models need >= 29 pixels)."""
    smallest = getattr(model, "min_input_size", None)
    if smallest is not None and size < smallest:
        raise ConfigError(f"{flag} {size} is too small for this model: pass {smallest} or more")


def model_kwargs(cfg: Any) -> Dict[str, Any]:
    kwargs = dict(cfg.model_kwargs)
    if cfg.drop_path is not None:
        kwargs["drop_path_rate"] = cfg.drop_path
    if cfg.img_size is not None:
        kwargs["img_size"] = cfg.img_size
    return kwargs


def build_model(cfg: Any, num_classes: int, load_pretrained: bool = True) -> nn.Module:
    """timm.create_model with the run's class count, drop path and resolution; `--pretrained FILE` loads an
    official or litvit checkpoint through the model's own loader (the head is re-initialised for another class
    count, the backbone kept)."""
    check_model_name(cfg.model)
    kwargs = model_kwargs(cfg)
    if cfg.pretrained and load_pretrained:
        if not Path(cfg.pretrained).is_file():
            raise ConfigError(f"--pretrained {cfg.pretrained!r} does not exist: pass an official or litvit checkpoint")
        kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(file=os.fspath(cfg.pretrained)))
    with refused_settings(cfg.model):
        return timm.create_model(cfg.model, num_classes=num_classes, **kwargs)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Any,
    device: torch.device,
    amp: Optional[torch.dtype] = None,
    channels_last: bool = False,
) -> Dict[str, Any]:
    """{'top1', 'top5' (percent), 'loss' (mean cross-entropy), 'images', 'bad': [(path, reason)]} over all ranks,
    summed as counts, so the result does not depend on the batch size or the number of processes."""
    was_training = model.training
    model.eval()
    stats = torch.zeros(4, dtype=torch.float64)  # top-1 hits, top-5 hits, images, summed loss
    bad: List[Tuple[str, str]] = []
    for images, targets, bad_here in loader:
        bad += bad_here
        if images is None:
            continue
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            logits = model(images)
        logits = logits.float()
        n = targets.shape[0]
        top1, topk = accuracy(logits, targets, topk=(1, min(5, logits.shape[1])))
        loss = F.cross_entropy(logits, targets, reduction="sum").item()
        stats += torch.tensor([round(top1.item() * n / 100), round(topk.item() * n / 100), n, loss])
    stats = all_reduce_sum(stats.to(device)).cpu()
    bad = [b for rank_bad in all_gather_object(bad) for b in rank_bad]
    model.train(was_training)
    n = int(stats[2].item())
    if n == 0:
        raise unreadable_validation(bad)
    return {
        "top1": 100.0 * stats[0].item() / n,
        "top5": 100.0 * stats[1].item() / n,
        "loss": stats[3].item() / n,
        "images": n,
        "bad": bad,
    }


class ClassificationTask:
    """Classification on an ImageFolder tree (or the embedded digits), with the papers' recipe."""

    name = "classification"
    score = "top1"
    score_label = "top-1"

    def __init__(self, channels_last: bool = False):
        self.channels_last = channels_last
        self.mixup: Optional[Mixup] = None
        self.criterion: nn.Module = nn.CrossEntropyLoss()

    def build(self, cfg: Any, rank: int, labels: Optional[List[str]] = None) -> TaskParts:
        """Classes first (they decide the head), then the model (the same initialisation on every rank), then its
        transforms and the data sets."""
        if cfg.data is not None:  # stored absolute, so that `litvit eval RUN` works from any folder
            cfg.data = os.path.abspath(cfg.data)
        tree, classes = scan_classes(cfg.data, cfg.train_split, cfg.val_split, labels)
        if cfg.num_classes is not None and cfg.num_classes != len(classes):
            raise ConfigError(
                f"--num-classes {cfg.num_classes}, but the data has {len(classes)} classes: drop --num-classes "
                "(the data decides) or train on the data with that many classes"
            )
        seed_all(cfg.seed)
        model = build_model(cfg, len(classes), load_pretrained=labels is None)
        dcfg = data_config(model, cfg.img_size, cfg.crop_pct, cfg.crop_mode, cfg.interpolation)
        size = dcfg["input_size"][-1]
        check_input_size(model, size)
        train_tf = train_transform(
            dcfg,
            cfg.scale,
            cfg.ratio,
            cfg.hflip,
            cfg.color_jitter,
            cfg.auto_augment,
            cfg.train_interpolation,
            cfg.reprob,
            cfg.remode,
            cfg.recount,
        )
        train_set, val_set, desc = classification_sets(tree, train_tf, eval_transform(dcfg), size, cfg.bad_images)
        self._build_loss(cfg, len(classes))
        record = {"data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in dcfg.items()}}
        return TaskParts(model, train_set, val_set, collate, classes, desc, size, record)

    def _build_loss(self, cfg: Any, num_classes: int) -> None:
        """timm's mixup / cutmix with soft-target cross-entropy, else label smoothing, else plain cross-entropy."""
        if cfg.mixup > 0 or cfg.cutmix > 0:
            self.mixup = Mixup(
                mixup_alpha=cfg.mixup,
                cutmix_alpha=cfg.cutmix,
                prob=cfg.mixup_prob,
                switch_prob=cfg.mixup_switch_prob,
                mode=cfg.mixup_mode,
                label_smoothing=cfg.smoothing,
                num_classes=num_classes,
            )
            self.criterion = SoftTargetCrossEntropy()
        elif cfg.smoothing > 0:
            self.criterion = LabelSmoothingCrossEntropy(smoothing=cfg.smoothing)
        else:
            self.criterion = nn.CrossEntropyLoss()

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> Tuple[torch.Tensor, int]:
        images, targets, _ = batch
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        if self.mixup is not None:
            images, targets = self.mixup(images, targets)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.criterion(model(images), targets), images.shape[0]

    def evaluate(self, model: nn.Module, loader: Any, device: torch.device, amp: Optional[torch.dtype]) -> Dict:
        return evaluate(model, loader, device, amp, self.channels_last)

    def metrics_line(self, metrics: Dict[str, Any]) -> str:
        ema = f"  EMA {metrics['ema_top1']:.1f}%" if "ema_top1" in metrics else ""
        return f"val top-1 {metrics['top1']:.1f}%  top-5 {metrics['top5']:.1f}%{ema}"
