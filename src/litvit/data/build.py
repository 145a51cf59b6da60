"""Data sets, samplers and loaders for training and evaluation, built one way for every command.

Training: a per-rank sampler (torch's DistributedSampler or timm's RepeatAugSampler) wrapped in `EpochSampler`, so
each sample's augmentation is a function of (seed, epoch, position) and a resumed epoch skips exactly the batches
already trained on. Evaluation: rank r takes samples r, r + world, ... without padding, so every sample counts once
whatever the number of processes.
"""

import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from timm.data.distributed_sampler import RepeatAugSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..errors import DataError, DataNotFoundError
from .digits import DIGITS_CLASSES, DigitsDataset
from .folder import ImageFileDataset, scan_image_folder, scan_split
from .loader import EpochSampler, Loader, SeededDataset, ShardSampler, collate

__all__ = [
    "classification_sets",
    "scan_classes",
    "default_workers",
    "eval_loader",
    "train_loader",
    "val_dataset",
]


def default_workers(embedded: bool, local_world_size: int = 1) -> int:
    """Loader processes per rank: none for the in-memory digits, else up to 8, one core left per rank."""
    if embedded:
        return 0
    return min(8, max(1, (os.cpu_count() or 2) // local_world_size - 1))


def scan_classes(
    data: Optional[str],
    train_split: str = "train",
    val_split: str = "val",
    labels: Optional[Sequence[str]] = None,
) -> Tuple[Optional[Dict[str, Any]], List[str]]:
    """(the checked ImageFolder tree, or None for the embedded digits; the class names) before any image is read.

    A classifier needs two classes or more; `labels` (a resumed run's) must equal the data's classes.
    """
    if data is None:
        tree, classes, where = None, list(DIGITS_CLASSES), "the embedded digits"
    else:
        tree = scan_image_folder(data, train_split, val_split)
        classes, where = tree["classes"], repr(data)
        if len(classes) < 2:
            raise DataError(
                f"{data!r} has one class ({classes[0]!r}): a classifier needs two classes or more; add a folder "
                f"of images for each other class to {train_split}/ and {val_split}/"
            )
    if labels is not None and list(labels) != classes:
        raise DataError(
            f"the run was trained on other classes ({len(labels)}) than {where} has ({len(classes)}): resume with "
            "the run's own --data"
        )
    return tree, classes


def classification_sets(
    tree: Optional[Dict[str, Any]],
    train_transform: Callable,
    val_transform: Callable,
    img_size: int,
    bad_images: str = "skip",
) -> Tuple[Dataset, Dataset, str]:
    """(train set, val set, description) of a tree from `scan_classes` (None: the embedded digits)."""
    if tree is None:
        train_set: Dataset = DigitsDataset("train", img_size=img_size, transform=train_transform)
        val_set: Dataset = DigitsDataset("val", img_size=img_size, transform=val_transform)
        where, n = "the embedded digits", len(DIGITS_CLASSES)
    else:
        train_set = ImageFileDataset(tree["train"], tree["classes"], train_transform, bad_images)
        val_set = ImageFileDataset(tree["val"], tree["classes"], val_transform, bad_images)
        where, n = tree["root"], len(tree["classes"])
    return train_set, val_set, f"{where} ({len(train_set)} train / {len(val_set)} val, {n} classes)"


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
        raise DataNotFoundError(f"data folder {data!r} does not exist: pass the validation folder (or its parent)")
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


def train_loader(
    dataset: Dataset,
    batch_size: int,
    workers: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    repeated_aug: bool = False,
    pin_memory: bool = False,
    collate_fn: Callable = collate,
) -> Tuple[DataLoader, EpochSampler, int]:
    """(loader, its EpochSampler, samples per rank per epoch). Unreadable images are replaced by the next readable
    one, so batches keep their size and DDP ranks stay in step."""
    if repeated_aug:
        base: Any = RepeatAugSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True)
    else:
        base = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True)
    sampler = EpochSampler(base, seed=seed, num_replicas=world_size, rank=rank)
    loader = Loader(
        SeededDataset(dataset, substitute=True),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_fn,
        pin_memory=pin_memory,
        drop_last=True,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )
    return loader, sampler, len(base)


def eval_loader(
    dataset: Dataset,
    batch_size: int,
    workers: int,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
    collate_fn: Callable = collate,
) -> DataLoader:
    """Rank `rank`'s shard of `dataset` (indices rank, rank + world, ...), unreadable images dropped and counted."""
    sampler = EpochSampler(ShardSampler(len(dataset), world_size, rank), seed=0, augment=False)
    return Loader(
        SeededDataset(dataset, substitute=False),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_fn,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
    )
