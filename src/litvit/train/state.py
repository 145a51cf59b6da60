"""`Run`: everything one training run holds, built once by `litvit.train.run.setup` and used by the loop."""

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data.loader import EpochSampler
from ..runtime import DistInfo
from ..tasks import Task, TaskParts
from .checkpoint import Progress
from .config import TrainConfig
from .log import Console
from .output import RunFolder


@dataclass
class Run:
    cfg: TrainConfig
    dist: DistInfo
    task: Task
    parts: TaskParts
    folder: RunFolder
    console: Console
    model: nn.Module  # the model itself (its state_dict is what checkpoints hold)
    module: nn.Module  # what the loop calls: the model, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Optional[Any]
    ema: Optional[Any]
    amp: Optional[torch.dtype]
    train_loader: DataLoader
    sampler: EpochSampler
    val_loader: DataLoader
    updates_per_epoch: int
    total_epochs: int
    lrs: Dict[str, float]
    resolved: Dict[str, Any]
    config_name: Optional[str] = None
    state: Progress = field(default_factory=Progress)
    tb: Any = None
    t0: float = field(default_factory=time.time)
    saved_desc: str = ""  # where the last checkpoint was written (for messages), "" before the first
    started: bool = False  # a checkpoint has been written: the run folder is worth keeping
    eval_time: float = 0.0  # seconds of the last validation (for the ETA)
    stop_asked: int = 0  # the signal (SIGINT, SIGTERM) asking to stop at the end of this optimizer step (loop.py)
    bad_pending: List[Tuple[str, str]] = field(default_factory=list)  # unreadable files met since the last report

    @property
    def num_batches(self) -> int:
        return self.updates_per_epoch * self.cfg.accum_steps
