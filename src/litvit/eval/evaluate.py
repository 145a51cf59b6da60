"""Top-1 / top-5 of a model on a validation set: sharded across torchrun ranks without padding, summed as counts,
so the result does not depend on the batch size or the number of processes."""

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import timm
import torch
import torch.nn.functional as F
from timm.utils import accuracy
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..checkpoint import CheckpointError, read_checkpoint, unwrap_state_dict
from ..data import DataError, DigitsDataset, EpochSampler, ImageFileDataset, SeededDataset, ShardSampler, collate
from ..data.folder import scan_split
from ..train.distributed import all_gather_object, all_reduce_sum


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    amp_dtype: Optional[torch.dtype] = None,
    channels_last: bool = False,
) -> Dict[str, Any]:
    """{'top1', 'top5' (percent), 'loss' (mean cross-entropy), 'images', 'bad': [(path, reason)]} over all ranks."""
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
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(images)
        logits = logits.float()
        n = targets.shape[0]
        k = min(5, logits.shape[1])
        top1, topk = accuracy(logits, targets, topk=(1, k))
        stats += torch.tensor(
            [
                round(top1.item() * n / 100),
                round(topk.item() * n / 100),
                n,
                F.cross_entropy(logits, targets, reduction="sum").item(),
            ],
            dtype=torch.float64,
        )
    stats = all_reduce_sum(stats.to(device)).cpu()
    bad = [b for rank_bad in all_gather_object(bad) for b in rank_bad]
    model.train(was_training)
    n = int(stats[2].item())
    if n == 0:
        raise DataError("no readable validation image: every file failed to load (see the warnings above)")
    return {
        "top1": 100.0 * stats[0].item() / n,
        "top5": 100.0 * stats[1].item() / n,
        "loss": stats[3].item() / n,
        "images": n,
        "bad": bad,
    }


def eval_loader(
    dataset: Dataset, batch_size: int, workers: int, rank: int = 0, world_size: int = 1, pin_memory: bool = False
) -> DataLoader:
    """Rank `rank`'s shard of `dataset` (indices rank, rank + world, ...), unreadable images dropped and counted."""
    sampler = EpochSampler(ShardSampler(len(dataset), world_size, rank), seed=0, augment=False)
    return DataLoader(
        SeededDataset(dataset, substitute=False),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
    )


def val_dataset(
    data: Optional[str],
    transform: Any,
    split: str = "val",
    bad_images: str = "skip",
    classes: Optional[Sequence[str]] = None,
    img_size: int = 32,
) -> Dataset:
    """The embedded digits' val split (data None) or an ImageFolder val set: `data/split` if it exists, else `data`
    itself. With `classes` (a litvit checkpoint's), folder names are mapped to those indices."""
    if data is None:
        return DigitsDataset("val", img_size=img_size, transform=transform)
    root = Path(data)
    if not root.exists():
        raise FileNotFoundError(f"data folder {data!r} does not exist: pass the validation folder (or its parent)")
    if (root / split).is_dir():
        samples, names = scan_split(root, split)
    else:
        samples, names = scan_split(root.parent, root.name)
    if classes is not None:
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise DataError(
                f"class folder(s) {', '.join(unknown[:5])} of {data!r} are not classes of the checkpoint (which knows "
                f"{', '.join(list(classes)[:5])}{', ...' if len(classes) > 5 else ''}): evaluate on the same classes "
                "it was trained on"
            )
        index = {name: i for i, name in enumerate(classes)}
        samples = [(path, index[names[target]]) for path, target in samples]
        names = list(classes)
    return ImageFileDataset(samples, names, transform=transform, bad_images=bad_images)


def is_train_checkpoint(ckpt: Any) -> bool:
    return isinstance(ckpt, dict) and ckpt.get("format") == "litvit-train"


def load_eval_model(
    model_name: Optional[str],
    checkpoint: Optional[str],
    ema: bool = False,
    model_kwargs: Optional[Dict[str, Any]] = None,
    img_size: Optional[int] = None,
) -> Tuple[nn.Module, Dict[str, Any]]:
    """The model to evaluate and what is known about it ({'classes', 'config'} for litvit training checkpoints).

    litvit training checkpoints (last.pth / best.pth) rebuild their own model (their weights, or the EMA weights
    with `ema`); any other file (official release, litvit convert output, timm-style state_dict) goes through
    timm.create_model(..., pretrained=True, pretrained_cfg_overlay=dict(file=...)), with the class count of the
    file's head.
    """
    kwargs = dict(model_kwargs or {})
    if img_size:
        kwargs["img_size"] = img_size
    if checkpoint is None:
        if model_name is None:
            raise DataError("pass --model NAME (and --checkpoint FILE, or the released weights are downloaded)")
        return timm.create_model(model_name, pretrained=True, **kwargs), {}
    path = Path(checkpoint)
    raw = read_checkpoint(path)
    if is_train_checkpoint(raw):
        config = raw["config"]
        trained = config["model"]
        if model_name is not None and model_name.split(".")[0] != trained:
            raise CheckpointError(
                f"{checkpoint!r} holds a {trained} trained by litvit, not {model_name}: pass --model {trained} "
                "(or leave --model out)"
            )
        key = "model_ema" if ema else "model"
        if key not in raw:
            raise CheckpointError(f"{checkpoint!r} has no EMA weights (the run had no --model-ema): drop --ema")
        build = dict(config.get("model_kwargs") or {})
        if config.get("img_size"):
            build["img_size"] = config["img_size"]
        build.update(kwargs)
        model = timm.create_model(trained, num_classes=raw["resolved"]["num_classes"], **build)
        model.load_state_dict(raw[key])
        return model, {"classes": raw.get("classes"), "config": config, "model_name": trained}
    if ema:
        raise CheckpointError(
            f"--ema reads the EMA weights of a litvit training checkpoint; {checkpoint!r} is not one: drop --ema"
        )
    if model_name is None:
        from ..checkpoint import identify

        found = identify(unwrap_state_dict(raw))
        if found is None:
            raise CheckpointError(f"cannot tell which model {checkpoint!r} holds: pass --model NAME")
        model_name, found_kwargs = found
        kwargs = {**found_kwargs, **kwargs}
    sd = unwrap_state_dict(raw)
    head = sd.get("head.weight")
    if head is not None:
        kwargs.setdefault("num_classes", int(head.shape[0]))
    del raw, sd
    overlay = dict(file=os.fspath(path))
    model = timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    return model, {"model_name": model_name}
