"""Building what trains a model, on timm's factories: optimizer (with the official parameter groups), learning-rate
schedule, grad scaler, weight EMA, and the DDP wrapper. Each is a plain function of the configuration and the
model, testable without data."""

import inspect
import math
import warnings
from typing import Any, Dict, Optional, Tuple

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3, NativeScaler
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..errors import ConfigError, one_line
from ..runtime import DistInfo
from .config import TrainConfig
from .optim import mmcv_param_groups, official_param_groups


def check_library_names(cfg: TrainConfig) -> None:
    """Refuse an optimizer or schedule name timm does not know before the data is scanned: each is built once on a
    one-parameter model, so the names (and the optional packages some optimizers need) are timm's own."""
    probe = nn.Linear(1, 1)
    try:
        optimizer = create_optimizer_v2(probe, opt=cfg.opt, lr=1.0)
    except (ValueError, ImportError, AssertionError) as e:  # an unknown name, a missing package, no CUDA
        raise ConfigError(
            f"--opt {cfg.opt!r}: {one_line(e).rstrip('.')}; pass a timm optimizer name such as adamw, sgd or lamb"
        ) from None
    except Exception:  # noqa: BLE001 - a known optimizer that cannot take the probe's parameters: the real build decides
        return
    try:
        scheduler, _ = create_scheduler_v2(
            optimizer,
            sched=cfg.sched,
            num_epochs=cfg.epochs,
            step_on_epochs=cfg.sched_on == "epoch",
            updates_per_epoch=1,
        )
        # timm 1.0.17 returns no scheduler for an unknown name where later versions raise
        problem = None if scheduler is not None else f"Unknown scheduler {cfg.sched!r}"
    except (ValueError, AssertionError) as e:
        problem = one_line(e).rstrip(".")
    if problem is not None:
        raise ConfigError(
            f"--sched {cfg.sched!r} with --sched-on {cfg.sched_on}: {problem}; pass a timm schedule such as cosine, "
            "step, multistep or poly, or the other --sched-on"
        )


def build_optimizer(model: nn.Module, cfg: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """timm's optimizer over the official LIT / LITv2 parameter groups (offset convs at lr x offset_lr_mult), or,
    for the dense recipes, mmcv's (`weight_decay_groups` all / no_norm)."""
    kwargs: Dict[str, Any] = {}
    if any(k in cfg.opt.lower() for k in ("adam", "lamb")):
        kwargs.update(eps=cfg.opt_eps, betas=tuple(cfg.opt_betas))
    return create_optimizer_v2(
        model,
        opt=cfg.opt,
        lr=lr,
        weight_decay=cfg.weight_decay,
        momentum=cfg.momentum,
        param_group_fn=(
            official_param_groups(cfg.weight_decay, lr, cfg.offset_lr_mult)
            if cfg.weight_decay_groups == "official"
            else mmcv_param_groups(cfg.weight_decay, lr, cfg.offset_lr_mult, cfg.weight_decay_groups == "no_norm")
        ),
        **kwargs,
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, lrs: Dict[str, float], updates_per_epoch: int
) -> Tuple[Any, int]:
    """timm's schedule (stepped per optimizer step or per epoch) and the run's total epochs (cooldown included).

    `warmup_steps` (the dense recipes' 500 iterations) is a warmup counted in optimizer steps; `decay_milestones`
    and `decay_rate` shape the multistep schedule (1x: x0.1 after epochs 8 and 11), `decay_rate` is also the poly
    schedule's power (0.9 for Semantic FPN)."""
    warmup: float = cfg.warmup_epochs
    if cfg.warmup_steps:
        warmup = (
            cfg.warmup_steps / updates_per_epoch
            if cfg.sched_on == "step"
            else math.ceil(cfg.warmup_steps / updates_per_epoch)
        )
    extra: Dict[str, Any] = {"decay_rate": cfg.decay_rate}
    if cfg.decay_milestones:
        extra["decay_milestones"] = list(cfg.decay_milestones)
    return create_scheduler_v2(
        optimizer,
        sched=cfg.sched,
        num_epochs=cfg.epochs,
        warmup_epochs=warmup,  # type: ignore[arg-type]  (timm multiplies it by updates_per_epoch)
        cooldown_epochs=cfg.cooldown_epochs,
        min_lr=lrs["min_lr"],
        warmup_lr=lrs["warmup_lr"],
        step_on_epochs=cfg.sched_on == "epoch",
        updates_per_epoch=updates_per_epoch,
        **extra,
    )


def build_scaler(amp: Optional[torch.dtype], device: torch.device) -> Optional[NativeScaler]:
    """A loss scaler for fp16 only (bf16 needs none)."""
    return NativeScaler(device=device.type) if amp == torch.float16 else None


def build_ema(model: nn.Module, cfg: TrainConfig) -> Optional[ModelEmaV3]:
    return ModelEmaV3(model, decay=cfg.model_ema_decay) if cfg.model_ema else None


def wrap_model(model: nn.Module, cfg: TrainConfig, dist: DistInfo, channels_last: bool) -> Tuple[nn.Module, nn.Module]:
    """Move the model to its device (channels-last and SyncBatchNorm on request) and wrap it in DDP when the run has
    several processes; returns (the model, the module to call in training)."""
    model.to(dist.device)
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    if cfg.sync_bn and dist.distributed:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if not dist.distributed:
        return model, model
    # BatchNorm statistics stay per process during training, as in the official trainer (rank 0's are saved, and
    # given to every rank before each evaluation).
    params = inspect.signature(DistributedDataParallel).parameters
    flag = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
    # The depthwise convs' weight gradients come out channels-last; DDP copies them into its buckets.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return model, DistributedDataParallel(
        model,
        device_ids=[dist.device.index] if dist.device.type == "cuda" else None,
        static_graph=cfg.grad_checkpointing,
        **{flag: False},
    )
