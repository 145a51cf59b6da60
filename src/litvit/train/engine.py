"""The training loop: timm's data pipeline, augmentation, mixup, losses, optimizer / scheduler factories and EMA,
around the litvit models; torchrun / DDP on CPUs (gloo) and GPUs (nccl); checkpoints that resume exactly.

Everything a run needs to continue bit for bit is in its checkpoint: the sampler order and every sample's
augmentation are functions of (seed, epoch, position) (see litvit.data.loader), and the generators that the loop
itself draws from (mixup, drop path) are saved and restored per rank.
"""

import json
import math
import os
import random
import sys
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import timm
import torch
import yaml
from timm.data import Mixup
from timm.data.distributed_sampler import RepeatAugSampler
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3, NativeScaler, dispatch_clip_grad
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from ..checkpoint import CheckpointError, mismatch_report
from ..data import (
    DIGITS_CLASSES,
    DataError,
    DigitsDataset,
    EpochSampler,
    ImageFileDataset,
    SeededDataset,
    collate,
    scan_image_folder,
)
from ..data.transforms import data_config, eval_transform, train_transform
from ..eval.evaluate import eval_loader, evaluate
from . import distributed as D
from .amp import amp_dtype
from .checkpoint import FORMAT, VERSION, CheckpointSaveError, atomic_save, rng_state, set_rng_state
from .config import ConfigError, TrainConfig, resolve_lrs
from .optim import official_param_groups


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stopped before applying that step."""

    same_on_all_ranks = True


def format_time(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Console:
    """Rank 0 prints; the other ranks stay quiet."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def info(self, msg: str) -> None:
        if self.enabled:
            print(msg, flush=True)

    def warn(self, msg: str) -> None:
        if self.enabled:
            print(f"warning: {msg}", file=sys.stderr, flush=True)


@dataclass
class Progress:
    """Where the run is, and what it has measured so far (saved in every checkpoint)."""

    epoch: int = 0  # epoch to run next (or in progress)
    batch: int = 0  # next micro-batch of that epoch
    update: int = 0  # optimizer steps done
    best_top1: float = -1.0
    best_top5: float = 0.0
    best_epoch: int = 0
    last_top1: Optional[float] = None
    last_top5: Optional[float] = None
    wall_time: float = 0.0  # seconds spent by earlier sessions of this run
    train_images: int = 0  # images trained on (all ranks), all sessions
    train_time: float = 0.0  # seconds in training steps, all sessions
    epoch_loss_sum: float = 0.0  # the epoch in progress: summed loss x images, images, seconds
    epoch_images: int = 0
    epoch_time: float = 0.0
    bad_images: List[str] = field(default_factory=list)


def _model_kwargs(cfg: TrainConfig) -> Dict[str, Any]:
    kwargs = dict(cfg.model_kwargs)
    if cfg.drop_path is not None:
        kwargs["drop_path_rate"] = cfg.drop_path
    if cfg.img_size is not None:
        kwargs["img_size"] = cfg.img_size
    return kwargs


def check_model_name(name: str) -> None:
    if not timm.is_model(name.split(".")[0]):
        import difflib

        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown model {name!r}{hint}: pass a timm model name such as litv2_s or litv2_nano")


def build_model(cfg: TrainConfig, num_classes: int, load_pretrained: bool = True) -> nn.Module:
    """timm.create_model with the run's class count, drop path and resolution; `--pretrained FILE` loads an
    official or litvit checkpoint through the model's own loader (the head is re-initialised for another class
    count, the backbone kept)."""
    check_model_name(cfg.model)
    kwargs = _model_kwargs(cfg)
    if cfg.pretrained and load_pretrained:
        if not Path(cfg.pretrained).is_file():
            raise FileNotFoundError(
                f"--pretrained {cfg.pretrained!r} does not exist: pass an official or litvit checkpoint file"
            )
        kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(file=os.fspath(cfg.pretrained)))
    try:
        return timm.create_model(cfg.model, num_classes=num_classes, **kwargs)
    except TypeError as e:
        raise ConfigError(f"{cfg.model} does not take these settings ({e}): drop the keyword") from None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15)
    return a == b


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        dist_info: D.DistInfo,
        resume: Optional[Dict[str, Any]] = None,
        resume_path: Optional[Path] = None,
        config_name: Optional[str] = None,
    ):
        self.cfg = cfg
        self.dist = dist_info
        self.device = dist_info.device
        self.console = Console(dist_info.is_main)
        self.resume = resume
        self.resume_path = resume_path
        self.config_name = config_name
        self.t0 = time.time()
        self.state = Progress()
        self.tb = None

    # --- setup -----------------------------------------------------------------------------------------------
    def setup(self) -> None:
        cfg, dist_info = self.cfg, self.dist
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        if cfg.sync_bn and self.device.type != "cuda" and dist_info.distributed:
            raise ConfigError("--sync-bn needs GPUs (SyncBatchNorm has no CPU version): drop it for CPU runs")
        self.amp_dtype = amp_dtype(cfg.amp, self.device)
        self.channels_last = cfg.channels_last if cfg.channels_last is not None else self.device.type == "cuda"
        self._resolve_output()

        # data: classes first (they decide the head)
        if cfg.data is not None:
            tree = scan_image_folder(cfg.data, cfg.train_split, cfg.val_split)
            self.classes = tree["classes"]
        else:
            tree = None
            self.classes = list(DIGITS_CLASSES)
        num_classes = len(self.classes)
        if cfg.num_classes is not None and cfg.num_classes != num_classes:
            raise ConfigError(
                f"--num-classes {cfg.num_classes}, but the data has {num_classes} classes: drop --num-classes "
                "(the data decides) or train on the data with that many classes"
            )
        if self.resume is not None and self.resume.get("classes") != self.classes:
            raise CheckpointError(
                f"{self.resume_path} was trained on other classes ({len(self.resume.get('classes') or [])}) than "
                f"this data has ({num_classes}): resume with the run's own --data"
            )
        self.num_classes = num_classes

        # model (the same initialisation on every rank; each rank's own random stream afterwards)
        seed_all(cfg.seed)
        model = build_model(cfg, num_classes, load_pretrained=self.resume is None)
        self.n_params = sum(p.numel() for p in model.parameters())
        self.data_cfg = data_config(model, cfg.img_size, cfg.crop_pct, cfg.crop_mode, cfg.interpolation)
        seed_all(cfg.seed + dist_info.rank)

        size = self.data_cfg["input_size"][-1]
        train_tf = train_transform(
            self.data_cfg,
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
        val_tf = eval_transform(self.data_cfg)
        if tree is None:
            train_ds = DigitsDataset("train", img_size=size, transform=train_tf)
            val_ds = DigitsDataset("val", img_size=size, transform=val_tf)
            self.data_desc = f"the embedded digits ({len(train_ds)} train / {len(val_ds)} val, {num_classes} classes)"
        else:
            train_ds = ImageFileDataset(tree["train"], self.classes, train_tf, cfg.bad_images)
            val_ds = ImageFileDataset(tree["val"], self.classes, val_tf, cfg.bad_images)
            self.data_desc = f"{cfg.data} ({len(train_ds)} train / {len(val_ds)} val, {num_classes} classes)"
        workers = cfg.workers
        if workers is None:
            workers = 0 if tree is None else min(8, max(1, (os.cpu_count() or 2) // dist_info.local_world_size - 1))
        pin = self.device.type == "cuda"
        world, rank = dist_info.world_size, dist_info.rank
        if cfg.repeated_aug:
            base = RepeatAugSampler(train_ds, num_replicas=world, rank=rank, shuffle=True)
        else:
            base = DistributedSampler(
                train_ds, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed, drop_last=True
            )
        self.train_sampler = EpochSampler(base, seed=cfg.seed, num_replicas=world, rank=rank)
        per_rank = len(base)
        self.updates_per_epoch = per_rank // cfg.batch_size // cfg.accum_steps
        if self.updates_per_epoch == 0:
            raise DataError(
                f"the training set gives each process {per_rank} images, fewer than one optimizer step needs "
                f"({cfg.batch_size} x {cfg.accum_steps} accumulation steps): lower --batch-size or --accum-steps"
            )
        self.num_batches = self.updates_per_epoch * cfg.accum_steps
        self.train_loader = DataLoader(
            SeededDataset(train_ds, substitute=True),
            batch_size=cfg.batch_size,
            sampler=self.train_sampler,
            num_workers=workers,
            collate_fn=collate,
            pin_memory=pin,
            drop_last=True,
            persistent_workers=workers > 0,
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        self.val_loader = eval_loader(val_ds, cfg.eval_batch_size or cfg.batch_size, workers, rank, world, pin)
        self.val_size = len(val_ds)

        # model on device, DDP
        model.to(self.device)
        if cfg.grad_checkpointing:
            model.set_grad_checkpointing(True)
        if cfg.sync_bn and dist_info.distributed:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model_without_ddp = model
        if dist_info.distributed:
            # BatchNorm statistics stay per process during training, as in the official trainer (rank 0's are
            # saved, and given to every rank before each evaluation).
            import inspect

            no_buffer_sync = (
                {"forward_sync_buffers": False}
                if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                else {"broadcast_buffers": False}
            )
            # The depthwise convs' weight gradients come out channels-last; DDP copies them into its buckets.
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
            self.model: nn.Module = DistributedDataParallel(
                model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                static_graph=cfg.grad_checkpointing,
                **no_buffer_sync,
            )
        else:
            self.model = model

        # loss
        self.mixup = None
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
            self.criterion: nn.Module = SoftTargetCrossEntropy()
        elif cfg.smoothing > 0:
            self.criterion = LabelSmoothingCrossEntropy(smoothing=cfg.smoothing)
        else:
            self.criterion = nn.CrossEntropyLoss()

        # optimizer, schedule, scaler, EMA
        self.lrs = resolve_lrs(cfg, world)
        opt_kwargs: Dict[str, Any] = {}
        if any(k in cfg.opt.lower() for k in ("adam", "lamb")):
            opt_kwargs.update(eps=cfg.opt_eps, betas=tuple(cfg.opt_betas))
        self.optimizer = create_optimizer_v2(
            model,
            opt=cfg.opt,
            lr=self.lrs["lr"],
            weight_decay=cfg.weight_decay,
            momentum=cfg.momentum,
            param_group_fn=official_param_groups(cfg.weight_decay, self.lrs["lr"], cfg.offset_lr_mult),
            **opt_kwargs,
        )
        self.scheduler, self.total_epochs = create_scheduler_v2(
            self.optimizer,
            sched=cfg.sched,
            num_epochs=cfg.epochs,
            warmup_epochs=cfg.warmup_epochs,
            cooldown_epochs=cfg.cooldown_epochs,
            min_lr=self.lrs["min_lr"],
            warmup_lr=self.lrs["warmup_lr"],
            step_on_epochs=cfg.sched_on == "epoch",
            updates_per_epoch=self.updates_per_epoch,
        )
        self.scaler = NativeScaler(device=self.device.type) if self.amp_dtype == torch.float16 else None
        self.ema = ModelEmaV3(model, decay=cfg.model_ema_decay) if cfg.model_ema else None

        self.resolved = {
            **self.lrs,
            "world_size": world,
            "num_classes": num_classes,
            "input_size": list(self.data_cfg["input_size"]),
            "updates_per_epoch": self.updates_per_epoch,
            "total_epochs": self.total_epochs,
            "amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "fp32",
            "workers": workers,
            "channels_last": self.channels_last,
            "data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in self.data_cfg.items()},
        }
        if self.resume is not None:
            self._load_resume()
        self._setup_output()

    def _resolve_output(self) -> None:
        """The output folder (rank 0 picks it, every rank uses it); a new run never overwrites another's."""
        cfg = self.cfg
        if cfg.output:
            out = Path(cfg.output)
        elif self.resume_path is not None:
            out = self.resume_path.parent
        else:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            out = Path("runs") / f"{cfg.model}-{stamp}"
            k = 1
            while out.exists():
                k += 1
                out = Path("runs") / f"{cfg.model}-{stamp}-{k}"
        self.out = Path(D.broadcast_object(str(out)))
        if self.resume is None and (self.out / "last.pth").exists():
            raise ConfigError(
                f"{str(self.out)!r} already holds a run (last.pth): continue it with --resume {self.out}, or pass "
                "another --output"
            )

    def _setup_output(self) -> None:
        cfg, out = self.cfg, self.out
        if self.dist.is_main:
            try:
                out.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(
                    f"cannot create the output folder {str(out)!r} ({e.strerror}): pass another --output"
                ) from None
            with open(out / "config.yaml", "w") as f:
                yaml.safe_dump({"config": self.cfg.to_dict(), "resolved": self.resolved}, f, sort_keys=False)
            if self.resume is not None:
                self._trim_metrics()
            if cfg.tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError:
                    raise ConfigError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
                self.tb = SummaryWriter(str(out / "tensorboard"))
        D.barrier()

    def _trim_metrics(self) -> None:
        """Drop metric lines of epochs the checkpoint had not finished (a run killed after logging them)."""
        for name in ("metrics.jsonl", "samples.jsonl"):
            path = self.out / name
            if not path.exists():
                continue
            lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
            keep = [ln for ln in lines if json.loads(ln).get("epoch", 0) <= self.state.epoch]
            if len(keep) != len(lines):
                path.write_text("".join(ln + "\n" for ln in keep))

    # --- checkpoints ---------------------------------------------------------------------------------------
    def _load_resume(self) -> None:
        ck = self.resume
        assert ck is not None
        sd = ck["model"]
        problems = mismatch_report(self.model_without_ddp, sd)
        if problems:
            raise CheckpointError(
                f"{self.resume_path} does not fit {self.cfg.model} as configured now: "
                + "; ".join(problems)
                + ". Resume with the run's own settings"
            )
        self.model_without_ddp.load_state_dict(sd)
        if self.ema is not None:
            if "model_ema" in ck:
                self.ema.module.load_state_dict(ck["model_ema"])
            else:
                self.console.warn("the checkpoint has no EMA weights: the EMA starts from the current weights")
        self.optimizer.load_state_dict(ck["optimizer"])
        fresh = self.scheduler.state_dict()
        if _same(fresh, ck["scheduler"]):
            self.scheduler.load_state_dict(ck["scheduler"])
        else:  # e.g. --epochs raised to extend a run: the schedule follows the new settings
            self.console.warn(
                "the learning-rate schedule differs from the checkpoint's (changed --epochs, --lr, ...): "
                "continuing on the new schedule"
            )
        if self.scaler is not None and ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        self.state = Progress(**ck["progress"])
        self.saved_desc = f"{self._where()}, optimizer step {self.state.update}"
        old = ck.get("resolved", {})
        if old.get("total_batch") != self.lrs["total_batch"]:
            self.console.warn(
                f"resuming with a total batch of {self.lrs['total_batch']} (the run had {old.get('total_batch')}): "
                "the learning rates are re-scaled and the run will not repeat the uninterrupted one exactly"
            )
        states = ck.get("rng") or []
        if len(states) == self.dist.world_size:
            set_rng_state(states[self.dist.rank])
        else:
            self.console.warn(
                f"the checkpoint has random states for {len(states)} processes, this run has "
                f"{self.dist.world_size}: each process is re-seeded (the run continues, but not bit for bit)"
            )
            seed_all(self.cfg.seed + self.dist.rank + 1000 * self.state.update)

    def _where(self) -> str:
        st = self.state
        return f"epoch {st.epoch + 1}, step {st.batch}" if st.batch else f"end of epoch {st.epoch}"

    def _state_dict(self, rngs: List[Dict[str, Any]]) -> Dict[str, Any]:
        progress = dict(vars(self.state))
        progress["wall_time"] = self.state.wall_time + (time.time() - self.t0)
        ck: Dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "model_name": self.cfg.model,
            "model": self.model_without_ddp.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "progress": progress,
            "rng": rngs,
            "config": self.cfg.to_dict(),
            "resolved": self.resolved,
            "classes": list(self.classes),
            "config_name": self.config_name,
        }
        if self.ema is not None:
            ck["model_ema"] = self.ema.module.state_dict()
        if self.scaler is not None:
            ck["scaler"] = self.scaler.state_dict()
        return ck

    def save(self, names: Tuple[str, ...] = ("last.pth",)) -> None:
        """Write the checkpoint(s) on rank 0 (all ranks take part: their random states go in); a failure on rank
        0 is raised on every rank."""
        rngs = D.all_gather_object(rng_state())
        error: Optional[str] = None
        if self.dist.is_main:
            ck = self._state_dict(rngs)
            try:
                for name in names:
                    atomic_save(ck, self.out / name)
            except CheckpointSaveError as e:
                error = str(e.strerror or e)
        error = D.broadcast_object(error)
        if error is not None:
            err = CheckpointSaveError(28, error)
            err.same_on_all_ranks = True  # type: ignore[attr-defined]
            raise err
        self.saved_desc = f"{self._where()}, optimizer step {self.state.update}"

    # --- the loop --------------------------------------------------------------------------------------------
    def _check_loss(self, loss: torch.Tensor, n: int, epoch: int, batch: int) -> float:
        """The loss averaged over ranks; stops the run (on every rank) if it is not finite anywhere."""
        value = loss.detach().float()
        finite = torch.isfinite(value)
        stats = torch.stack(
            [
                torch.where(finite, value * n, torch.zeros_like(value)),
                torch.tensor(float(n), device=value.device),
                (~finite).float(),
            ]
        )
        stats = D.all_reduce_sum(stats).tolist()
        if stats[2] > 0:
            last = self.out / "last.pth"
            kept = (
                f"the last good checkpoint, {last} ({self.saved_desc}), is kept"
                if getattr(self, "saved_desc", None)
                else "no checkpoint had been written yet"
            )
            local = value.item()
            what = "NaN" if math.isnan(local) else "infinite" if math.isinf(local) else "not finite on another process"
            raise NonFiniteLossError(
                f"the loss is {what} at epoch {epoch + 1}, step {batch + 1} of {self.num_batches} (optimizer step "
                f"{self.state.update + 1}, lr {self.optimizer.param_groups[0]['lr']:.3g}); stopped before applying "
                f"it, {kept}. Lower --lr, keep --clip-grad on or try --amp off, then --resume"
            )
        return stats[0] / max(stats[1], 1.0)

    def train_epoch(self, epoch: int) -> Tuple[float, float]:
        cfg, st = self.cfg, self.state
        start = st.batch if st.epoch == epoch else 0
        if start == 0:
            st.epoch_loss_sum, st.epoch_images, st.epoch_time = 0.0, 0, 0.0
        self.train_sampler.set_epoch(epoch, skip=start * cfg.batch_size)
        if cfg.log_samples:
            self._log_samples(epoch, start)
        self.model.train()
        world = self.dist.world_size
        bar = None
        show = cfg.progress if cfg.progress is not None else sys.stderr.isatty()
        try:
            from tqdm import tqdm
        except ImportError:  # no progress bar without tqdm: log lines instead
            show = False
        if show and self.dist.is_main:
            per_batch = cfg.batch_size * world
            bar = tqdm(
                total=self.num_batches * per_batch,
                initial=start * per_batch,
                unit="img",
                unit_scale=True,
                desc=f"epoch {epoch + 1}/{self.total_epochs}",
                leave=False,
                dynamic_ncols=True,
            )
        t_last = time.time()
        params = [p for p in self.model.parameters() if p.requires_grad]
        autocast = torch.autocast(
            self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
        )
        for b, (images, targets, bad) in zip(range(start, self.num_batches), self.train_loader):
            self._note_bad(bad)
            images = images.to(self.device, non_blocking=True)
            targets = targets.to(self.device, non_blocking=True)
            if self.mixup is not None:
                images, targets = self.mixup(images, targets)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            step_now = (b + 1) % cfg.accum_steps == 0
            sync = self.model.no_sync() if self.dist.distributed and not step_now else nullcontext()
            with sync:
                with autocast:
                    loss = self.criterion(self.model(images), targets)
                mean_loss = self._check_loss(loss, images.shape[0], epoch, b)
                if self.scaler is not None:
                    self.scaler(
                        loss / cfg.accum_steps,
                        self.optimizer,
                        clip_grad=cfg.clip_grad,
                        clip_mode=cfg.clip_mode,
                        parameters=params,
                        need_update=step_now,
                    )
                else:
                    (loss / cfg.accum_steps).backward()
                    if step_now:
                        if cfg.clip_grad is not None:
                            dispatch_clip_grad(params, cfg.clip_grad, mode=cfg.clip_mode)
                        self.optimizer.step()
            n_global = images.shape[0] * world
            st.epoch_loss_sum += mean_loss * n_global
            st.epoch_images += n_global
            if not step_now:
                continue
            self.optimizer.zero_grad(set_to_none=True)
            st.update += 1
            st.batch = b + 1
            if cfg.sched_on == "step":
                self.scheduler.step_update(num_updates=st.update)
            if self.ema is not None:
                self.ema.update(self.model_without_ddp, step=st.update)
            now = time.time()
            st.epoch_time += now - t_last
            st.train_time += now - t_last
            st.train_images += cfg.batch_size * cfg.accum_steps * world
            t_last = now
            self._report_step(bar, epoch, b, mean_loss)
            if cfg.save_every_steps and st.update % cfg.save_every_steps == 0 and b + 1 < self.num_batches:
                self.save()
                self.console.info(
                    f"  saved {self.out / 'last.pth'} (epoch {epoch + 1}, step {b + 1}"
                    f"/{self.num_batches}, optimizer step {st.update})"
                )
        if bar is not None:
            bar.close()
        loss_avg = st.epoch_loss_sum / max(st.epoch_images, 1)
        ips = st.epoch_images / max(st.epoch_time, 1e-9)
        return loss_avg, ips

    def _session_rate(self) -> float:
        return self.state.train_images / max(self.state.train_time, 1e-9)

    def _eta(self) -> float:
        done = self.state.update
        total = self.total_epochs * self.updates_per_epoch
        per_update = self.state.train_time / max(done, 1)
        evals = (self.total_epochs - self.state.epoch) * getattr(self, "eval_time", 0.0)
        return max(0.0, (total - done) * per_update + evals)

    def _report_step(self, bar: Any, epoch: int, b: int, loss: float) -> None:
        st, cfg = self.state, self.cfg
        lr = self.optimizer.param_groups[0]["lr"]
        if bar is not None:
            bar.update(cfg.batch_size * cfg.accum_steps * self.dist.world_size)
            bar.set_postfix_str(f"loss {loss:.3f} lr {lr:.2e} run ETA {format_time(self._eta())}")
        elif st.update % cfg.log_interval == 0:
            self.console.info(
                f"  epoch {epoch + 1}/{self.total_epochs} step {b + 1}/{self.num_batches} loss {loss:.4f} "
                f"lr {lr:.2e} {self._session_rate():.0f} img/s ETA {format_time(self._eta())}"
            )
        if self.tb is not None and st.update % cfg.log_interval == 0:
            self.tb.add_scalar("train/loss", loss, st.update)
            self.tb.add_scalar("train/lr", lr, st.update)

    def _note_bad(self, bad: List[Tuple[str, str]]) -> None:
        if bad:
            self._bad_pending = getattr(self, "_bad_pending", []) + list(bad)

    def _report_bad(self, extra: List[Tuple[str, str]]) -> int:
        """Warn (once per file) about unreadable images met by any rank; returns the total count."""
        mine = getattr(self, "_bad_pending", []) + list(extra)
        self._bad_pending = []
        seen = set(self.state.bad_images)
        new: Dict[str, str] = {}
        for rank_list in D.all_gather_object(mine):
            for path, reason in rank_list:
                if path not in seen and path not in new:
                    new[path] = reason
        if new:
            self.state.bad_images = sorted(seen | set(new))
            listed = "; ".join(f"{p} ({r})" for p, r in list(new.items())[:10])
            more = f"; ... ({len(new) - 10} more)" if len(new) > 10 else ""
            self.console.warn(
                f"skipped {len(new)} unreadable image file(s): {listed}{more}. Replace or remove them "
                "(or pass --bad-images error to stop at such files)"
            )
        return len(self.state.bad_images)

    def _log_samples(self, epoch: int, start: int) -> None:
        n = (self.num_batches - start) * self.cfg.batch_size
        mine = [i for i, _ in list(self.train_sampler)[:n]]
        everyone = D.all_gather_object(mine)
        if self.dist.is_main:
            with open(self.out / "samples.jsonl", "a") as f:
                for r, idx in enumerate(everyone):
                    f.write(json.dumps({"epoch": epoch + 1, "rank": r, "first_step": start, "indices": idx}) + "\n")

    def validate(self) -> Dict[str, Any]:
        t = time.time()
        D.broadcast_buffers(self.model_without_ddp)
        res = evaluate(self.model_without_ddp, self.val_loader, self.device, self.amp_dtype, self.channels_last)
        if self.ema is not None:
            D.broadcast_buffers(self.ema.module)
            ema_res = evaluate(self.ema.module, self.val_loader, self.device, self.amp_dtype, self.channels_last)
            res["ema_top1"], res["ema_top5"] = ema_res["top1"], ema_res["top5"]
        self.eval_time = time.time() - t
        return res

    def run(self) -> Dict[str, Any]:
        self.setup()
        cfg, st, con = self.cfg, self.state, self.console
        mode = f"{self.device.type} {self.resolved['amp']}"
        procs = f"{self.dist.world_size} processes" if self.dist.distributed else "1 process"
        con.info(
            f"litvit train: {cfg.model} ({self.n_params / 1e6:.2f}M params) on {self.data_desc}, "
            f"{self.data_cfg['input_size'][-1]}px"
        )
        con.info(
            f"  {self.total_epochs} epochs x {self.updates_per_epoch} steps, batch {self.lrs['total_batch']} "
            f"({cfg.batch_size} x {procs}{f' x {cfg.accum_steps} accumulated' if cfg.accum_steps > 1 else ''}), "
            f"{cfg.opt} lr {self.lrs['lr']:.2e}, {mode} -> {self.out}"
        )
        if self.resume is not None:
            con.info(f"  resumed from {self.resume_path} at {self._where()} (optimizer step {st.update})")
        if cfg.pretrained and self.resume is None:
            con.info(
                f"  initialised from {cfg.pretrained} (head re-initialised for {self.num_classes} classes "
                "where the checkpoint's differs)"
            )
        if st.epoch >= self.total_epochs:
            con.info("  the run had already finished: nothing to train")
        val: Optional[Dict[str, Any]] = None
        for epoch in range(st.epoch, self.total_epochs):
            t_epoch = time.time()
            loss, ips = self.train_epoch(epoch)
            if cfg.sched_on == "epoch":
                self.scheduler.step(epoch + 1)
            val = self.validate()
            bad_total = self._report_bad(val["bad"])
            st.epoch, st.batch = epoch + 1, 0
            st.last_top1, st.last_top5 = val["top1"], val["top5"]
            improved = val["top1"] > st.best_top1
            if improved:
                st.best_top1, st.best_top5, st.best_epoch = val["top1"], val["top5"], epoch + 1
            record = {
                "epoch": epoch + 1,
                "step": st.update,
                "train_loss": round(loss, 6),
                "lr": self.optimizer.param_groups[0]["lr"],
                "val_top1": round(val["top1"], 4),
                "val_top5": round(val["top5"], 4),
                "val_loss": round(val["loss"], 6),
                "val_images": val["images"],
                "images_per_s": round(ips, 1),
                "epoch_time_s": round(time.time() - t_epoch, 2),
                "elapsed_s": round(st.wall_time + time.time() - self.t0, 2),
                "bad_images": bad_total,
            }
            if "ema_top1" in val:
                record.update(val_ema_top1=round(val["ema_top1"], 4), val_ema_top5=round(val["ema_top5"], 4))
            self.save(("last.pth", "best.pth") if improved else ("last.pth",))
            if self.dist.is_main:
                with open(self.out / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
                if self.tb is not None:
                    for k in ("val_top1", "val_top5", "val_loss", "train_loss", "images_per_s"):
                        self.tb.add_scalar(k.replace("_", "/", 1), record[k], epoch + 1)
            ema = f"  EMA {val['ema_top1']:.1f}%" if "ema_top1" in val else ""
            con.info(
                f"epoch {epoch + 1}/{self.total_epochs}  loss {loss:.4f}  val top-1 {val['top1']:.1f}%  "
                f"top-5 {val['top5']:.1f}%{ema}  {ips:.0f} img/s  {format_time(time.time() - t_epoch)}"
                f"  ETA {format_time(self._eta())}"
            )
        return self.finish()

    def finish(self) -> Dict[str, Any]:
        cfg, st = self.cfg, self.state
        wall = st.wall_time + time.time() - self.t0
        checksum = torch.stack([p.detach().double().sum() for p in self.model_without_ddp.parameters()]).sum()
        sums = D.all_gather_object(checksum.item())
        in_sync = all(s == sums[0] for s in sums)
        if not in_sync:
            self.console.warn(f"the processes ended with different weights (checksums {sums})")
        out = self.out
        summary = {
            "model": cfg.model,
            "config": self.config_name,
            "data": cfg.data or "digits (embedded)",
            "num_classes": self.num_classes,
            "params": self.n_params,
            "epochs": self.total_epochs,
            "steps": st.update,
            "world_size": self.dist.world_size,
            "total_batch": self.lrs["total_batch"],
            "device": str(self.device.type),
            "amp": self.resolved["amp"],
            "final_top1": st.last_top1,
            "final_top5": st.last_top5,
            "best_top1": st.best_top1 if st.best_top1 >= 0 else None,
            "best_top5": st.best_top5 if st.best_top1 >= 0 else None,
            "best_epoch": st.best_epoch,
            "images_per_s": round(self._session_rate(), 1),
            "wall_time_s": round(wall, 2),
            "bad_images": len(st.bad_images),
            "ranks_in_sync": in_sync,
            "target_top1": cfg.target_top1,
            "target_met": None if cfg.target_top1 is None or st.last_top1 is None else st.last_top1 >= cfg.target_top1,
            "outputs": {
                "dir": str(out),
                "last": str(out / "last.pth"),
                "best": str(out / "best.pth"),
                "metrics": str(out / "metrics.jsonl"),
                "config": str(out / "config.yaml"),
                "summary": str(out / "summary.json"),
            },
        }
        if self.dist.is_main:
            with open(out / "summary.json", "w") as f:
                json.dump(summary, f, indent=2)
            if self.tb is not None:
                self.tb.close()
            if st.last_top1 is not None:
                target = ""
                if cfg.target_top1 is not None:
                    ok = st.last_top1 >= cfg.target_top1
                    target = f" (>= {cfg.target_top1:g}% target {'met' if ok else 'NOT met'})"
                self.console.info(
                    f"val top-1 {st.last_top1:.1f}%{target} in {format_time(wall)}; best {st.best_top1:.1f}% "
                    f"(epoch {st.best_epoch}), {summary['images_per_s']:.0f} img/s"
                )
                self.console.info(f"wrote {out}/: last.pth, best.pth, metrics.jsonl, summary.json")
        return summary


def run_training(
    cfg: TrainConfig,
    resume: Optional[Dict[str, Any]] = None,
    resume_path: Optional[Path] = None,
    config_name: Optional[str] = None,
) -> Dict[str, Any]:
    """Train as configured (under torchrun: this process's share); returns the summary (also in summary.json)."""
    dist_info = D.init_distributed(cfg.device)
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    threads_before = torch.get_num_threads()
    try:
        return Trainer(cfg, dist_info, resume, resume_path, config_name).run()
    finally:  # leave the process as it was (runs can be started from Python, e.g. by tests)
        torch.use_deterministic_algorithms(deterministic_before)
        torch.set_num_threads(threads_before)
        D.cleanup()
