"""Tasks: what the training loop needs to know about a problem, and nothing else.

The loop in `litvit.train.loop` is generic over a task. A task builds the model and the data sets, computes the loss
of one training batch and the validation metrics, and names the metric that picks `best.pth`. Classification,
detection (COCO boxes and masks, `detection.py`) and segmentation (ADE20K label maps, `segmentation.py`) are tasks;
the loop knows nothing of images, boxes or masks.
"""

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple

import torch
from torch import nn
from torch.utils.data import Dataset

from ..errors import DataError

__all__ = ["Task", "TaskParts", "get_task", "unreadable_validation"]


@dataclass
class TaskParts:
    """What a task builds for a run: the model (on the CPU), the data sets and how to batch them."""

    model: nn.Module
    train_set: Dataset
    val_set: Dataset
    collate: Callable[[List[Any]], Any]
    labels: List[str]  # class names (they decide the head and are saved with every checkpoint)
    description: str  # one line for the log: what the data is
    input_size: int  # the training resolution
    record: Dict[str, Any] = field(default_factory=dict)  # resolved settings worth keeping in config.yaml
    notes: List[str] = field(default_factory=list)  # warnings about the data (skipped annotations), for the log


class Task(Protocol):
    """The contract between a task and the training loop (see `litvit.tasks.classification` for the first one)."""

    name: str
    score: str  # the validation metric that picks best.pth; higher is better
    score_label: str  # how the closing line names it: 'top-1', 'bbox mAP', 'mIoU' (in percent)

    def build(self, cfg: Any, rank: int, labels: Optional[List[str]] = None) -> TaskParts:
        """Model and data sets for `cfg` (`labels`: a resumed run's, which the data must match)."""

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> Tuple[torch.Tensor, int]:
        """The mean loss of one training micro-batch (called under autocast) and its number of samples."""

    def evaluate(self, model: nn.Module, loader: Any, device: torch.device, amp: Optional[torch.dtype]) -> Dict:
        """Validation metrics over every rank: `score` among them, plus 'images', 'bad' (unreadable files met, as
        (path, reason) pairs) and 'loss' where the task has one (detectors give no loss in eval mode)."""

    def metrics_line(self, metrics: Dict[str, Any]) -> str:
        """One log line's worth of the metrics, e.g. 'val top-1 99.2%  top-5 100.0%'."""


def unreadable_validation(bad: List[Tuple[str, str]]) -> DataError:
    """The error for a validation set of which no file could be read, naming what failed (the per-file warnings come
    after validation, which this error stops)."""
    shown = "; ".join(f"{path} ({reason})" for path, reason in bad[:3])
    more = f"; ... ({len(bad) - 3} more)" if len(bad) > 3 else ""
    return DataError(f"no readable validation image: all {len(bad)} failed to load: {shown}{more}. Fix or replace them")


def get_task(name: str = "classification", **options: Any) -> Task:
    """The task called `name`: 'classification' / 'cls', 'detection' / 'det', 'segmentation' / 'seg'."""
    if name in ("classification", "cls"):
        from .classification import ClassificationTask

        return ClassificationTask(**options)
    if name in ("detection", "det"):
        from .detection import DetectionTask

        return DetectionTask(**options)
    if name in ("segmentation", "seg"):
        from .segmentation import SegmentationTask

        return SegmentationTask(**options)
    from ..errors import ConfigError

    raise ConfigError(
        f"unknown task {name!r}: litvit trains classification (cls), detection (det) and segmentation (seg) models"
    )
