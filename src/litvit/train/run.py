"""`run_training`: set a run up (task, model, data, optimizer, schedule, processes, folder, resume), run the loop,
write the summary. Reading this file top to bottom is reading what `litvit train` does."""

import math
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from .. import runtime as rt
from ..data.build import default_workers, eval_loader, train_loader
from ..data.folder import BadImage
from ..errors import (
    CheckpointError,
    ConfigError,
    DataError,
    LitvitError,
    OutOfResources,
    RunInterrupted,
    one_line,
    out_of_resources,
)
from ..tasks import Task, get_task, unreadable_validation
from .build import build_ema, build_optimizer, build_scaler, build_scheduler, check_library_names, wrap_model
from .checkpoint import progress_of, set_rng_state
from .config import TrainConfig, resolve_lrs
from .log import Console, format_time
from .loop import fit, session_rate
from .output import RunFolder, choose_folder
from .state import Run


def setup(
    cfg: TrainConfig,
    dist: rt.DistInfo,
    task: Task,
    resume: Optional[Dict[str, Any]] = None,
    config_name: Optional[str] = None,
    folder: Optional[RunFolder] = None,
) -> Run:
    """Everything the loop needs, in the order each piece depends on the last; nothing is written to disk here."""
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    elif dist.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    rt.set_threads(cfg.threads)
    if cfg.sync_bn and dist.device.type != "cuda" and dist.distributed:
        raise ConfigError("--sync-bn needs GPUs (SyncBatchNorm has no CPU version): drop it for CPU runs")
    amp = rt.autocast_dtype(cfg.amp, dist.device)
    channels_last = cfg.channels_last if cfg.channels_last is not None else dist.device.type == "cuda"
    if hasattr(task, "channels_last"):
        task.channels_last = channels_last

    check_library_names(cfg)
    parts = task.build(cfg, dist.rank, labels=resume.get("classes") if resume is not None else None)
    check_validation_readable(parts.val_set)
    rt.seed_all(cfg.seed + dist.rank)  # the same initialisation on every rank; each rank's own stream from here
    workers = cfg.workers if cfg.workers is not None else default_workers(cfg.data is None, dist.local_world_size)
    pin = dist.device.type == "cuda"
    loader, sampler, per_rank = train_loader(
        parts.train_set, cfg.batch_size, workers, cfg.seed, dist.rank, dist.world_size, cfg.repeated_aug, pin,
        parts.collate,
    )  # fmt: skip
    updates_per_epoch = per_rank // cfg.batch_size // cfg.accum_steps
    if updates_per_epoch == 0:
        raise DataError(
            f"the training set gives each process {per_rank} images, fewer than one optimizer step needs "
            f"({cfg.batch_size} x {cfg.accum_steps} accumulation steps): lower --batch-size or --accum-steps"
        )
    val_loader = eval_loader(
        parts.val_set, cfg.eval_batch_size or cfg.batch_size, workers, dist.rank, dist.world_size, pin, parts.collate
    )

    model, module = wrap_model(parts.model, cfg, dist, channels_last)
    lrs = resolve_lrs(cfg, dist.world_size)
    optimizer = build_optimizer(model, cfg, lrs["lr"])
    scheduler, total_epochs = build_scheduler(optimizer, cfg, lrs, updates_per_epoch)
    resolved = {
        **lrs,
        "world_size": dist.world_size,
        "num_classes": len(parts.labels),
        "input_size": [3, parts.input_size, parts.input_size],
        "updates_per_epoch": updates_per_epoch,
        "total_epochs": total_epochs,
        "amp": str(amp).replace("torch.", "") if amp is not None else "fp32",  # as recorded since format 1
        "workers": workers,
        "channels_last": channels_last,
        **parts.record,
    }
    run = Run(
        cfg=cfg,
        dist=dist,
        task=task,
        parts=parts,
        folder=folder or RunFolder(Path("."), resuming=resume is not None),
        console=Console(dist.is_main),
        model=model,
        module=module,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=build_scaler(amp, dist.device),
        ema=build_ema(model, cfg),
        amp=amp,
        train_loader=loader,
        sampler=sampler,
        val_loader=val_loader,
        updates_per_epoch=updates_per_epoch,
        total_epochs=total_epochs,
        lrs=lrs,
        resolved=resolved,
        config_name=config_name,
    )
    if resume is not None:
        restore(run, resume)
    return run


def check_validation_readable(val_set: Any) -> None:
    """Read validation samples until one loads (one read, normally): a validation set of which nothing loads is
    refused now, not after the first epoch has trained."""
    bad: List[Tuple[str, str]] = []
    for index in range(len(val_set)):
        sample = val_set[index][0]
        if not isinstance(sample, BadImage):
            return
        bad.append((sample.path, sample.reason))
    raise unreadable_validation(bad)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, float) or isinstance(b, float):
        numbers = isinstance(a, (int, float)) and isinstance(b, (int, float))
        return numbers and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15)
    return a == b


# The optimizer group entries set by flags (--weight-decay, --opt-betas, --opt-eps, --momentum). Others are kept as
# saved on resume: the lr the schedule sets, and counters some optimizers keep there (timm's Lookahead).
_SETTINGS = ("weight_decay", "betas", "eps", "momentum")


def _keep_configured(optimizer: torch.optim.Optimizer, configured: List[Dict[str, Any]]) -> List[str]:
    """Put the run's settings (weight decay, betas, eps, momentum) back into the groups `load_state_dict` replaced
    with the checkpoint's, which would silently ignore a changed --weight-decay on resume; the names that changed."""
    changed = []
    for group, settings in zip(optimizer.param_groups, configured):
        for key, value in settings.items():
            if key not in group or not _same(group[key], value):
                changed.append(key)
                group[key] = value
    return sorted(set(changed))


def restore(run: Run, ck: Dict[str, Any]) -> None:
    """Continue from a training checkpoint: weights, EMA, optimizer, schedule, scaler, position, random states."""
    from ..checkpoint import load_exactly

    does_not_fit = f"the checkpoint does not fit {run.cfg.model} as configured now"
    fix = "Resume with the run's own settings (if you kept them, the file is damaged: resume from another checkpoint)"
    load_exactly(run.model, ck["model"], does_not_fit, fix)
    if run.ema is not None:
        if "model_ema" in ck:
            load_exactly(run.ema.module, ck["model_ema"], does_not_fit + " (EMA)", "The file is damaged: use another")
        else:
            run.console.warn("the checkpoint has no EMA weights: the EMA starts from the current weights")
    configured = [{k: v for k, v in group.items() if k in _SETTINGS} for group in run.optimizer.param_groups]
    try:
        run.optimizer.load_state_dict(ck["optimizer"])
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, RuntimeError) as e:
        raise CheckpointError(
            f"the checkpoint's optimizer state does not fit the optimizer configured now ({one_line(e)}). {fix}"
        ) from None
    changed = _keep_configured(run.optimizer, configured)
    if changed:
        run.console.warn(f"optimizer settings changed from the checkpoint's: {', '.join(changed)} (the new ones apply)")
    if _same(run.scheduler.state_dict(), ck["scheduler"]):
        run.scheduler.load_state_dict(ck["scheduler"])
    else:  # e.g. --epochs raised to extend a run: the schedule follows the new settings
        run.console.warn(
            "the learning-rate schedule differs from the checkpoint's (changed --epochs, --lr, ...): "
            "continuing on the new schedule"
        )
    if run.scaler is not None and ck.get("scaler"):
        run.scaler.load_state_dict(ck["scaler"])
    run.state = progress_of(ck)
    run.saved_desc = f"{run.state.where()}, optimizer step {run.state.update}"
    old = ck.get("resolved", {})
    if old.get("total_batch") != run.lrs["total_batch"]:
        run.console.warn(
            f"resuming with a total batch of {run.lrs['total_batch']} (the run had {old.get('total_batch')}): "
            "the learning rates are re-scaled and the run will not repeat the uninterrupted one exactly"
        )
    states = ck.get("rng") or []
    if len(states) == run.dist.world_size:
        set_rng_state(states[run.dist.rank])
    else:
        run.console.warn(
            f"the checkpoint has random states for {len(states)} processes, this run has "
            f"{run.dist.world_size}: each process is re-seeded (the run continues, but not bit for bit)"
        )
        rt.seed_all(run.cfg.seed + run.dist.rank + 1000 * run.state.update)


def announce(run: Run, resume_path: Optional[Path]) -> None:
    cfg, con, st = run.cfg, run.console, run.state
    n_params = sum(p.numel() for p in run.model.parameters())
    procs = f"{run.dist.world_size} processes" if run.dist.distributed else "1 process"
    accum = f" x {cfg.accum_steps} accumulated" if cfg.accum_steps > 1 else ""
    con.info(
        f"litvit train: {cfg.model} ({n_params / 1e6:.2f}M params) on {run.parts.description}, {run.parts.input_size}px"
    )
    con.info(
        f"  {run.total_epochs} epochs x {run.updates_per_epoch} steps, batch {run.lrs['total_batch']} "
        f"({cfg.batch_size} x {procs}{accum}), {cfg.opt} lr {run.lrs['lr']:.2e}, "
        f"{run.dist.device.type} {run.resolved['amp']} -> {run.folder.path}"
    )
    for note in run.parts.notes:
        con.warn(note)
    slow_bf16 = rt.slow_bf16_note(run.dist.device, run.amp)
    if slow_bf16:
        con.warn(f"{slow_bf16}; use --amp fp32")
    if resume_path is not None:
        con.info(f"  resumed from {resume_path} at {st.where()} (optimizer step {st.update})")
    elif cfg.pretrained:
        what = (
            f"head re-initialised for {len(run.parts.labels)} classes where the checkpoint's differs"
            if run.task.name == "classification"
            else "the backbone; the FPN and heads start fresh"
        )
        con.info(f"  initialised from {cfg.pretrained} ({what})")
    if st.epoch >= run.total_epochs:
        con.info("  the run had already finished: nothing to train")


def finish(run: Run) -> Dict[str, Any]:
    """summary.json (rank 0) and the closing lines; checks that every process ended with the same weights."""
    cfg, st, out = run.cfg, run.state, run.folder.path
    wall = st.wall_time + time.time() - run.t0
    checksum = torch.stack([p.detach().double().sum() for p in run.model.parameters()]).sum()
    sums = rt.all_gather_object(checksum.item())
    in_sync = all(s == sums[0] for s in sums)
    if not in_sync:
        run.console.warn(f"the processes ended with different weights (checksums {sums})")
    summary = {
        "model": cfg.model,
        "task": run.task.name,
        "score": run.task.score,  # what final_top1 / best_top1 / target_top1 measure (the name is historical)
        "config": run.config_name,
        "data": cfg.data or ("digits (embedded)" if run.task.name == "classification" else "scenes (embedded)"),
        "num_classes": len(run.parts.labels),
        "params": sum(p.numel() for p in run.model.parameters()),
        "epochs": run.total_epochs,
        "steps": st.update,
        "world_size": run.dist.world_size,
        "total_batch": run.lrs["total_batch"],
        "device": str(run.dist.device.type),
        "amp": run.resolved["amp"],
        "final_top1": st.last_top1,
        "final_top5": st.last_top5,
        "best_top1": st.best_top1 if st.best_top1 >= 0 else None,
        "best_top5": st.best_top5 if st.best_top1 >= 0 else None,
        "best_epoch": st.best_epoch,
        "images_per_s": round(session_rate(run), 1),
        "wall_time_s": round(wall, 2),
        "bad_images": len(st.bad_images),
        "ranks_in_sync": in_sync,
        "target_top1": cfg.target_top1,
        "target_met": None if cfg.target_top1 is None or st.last_top1 is None else st.last_top1 >= cfg.target_top1,
        "outputs": {name: str(out / f) for name, f in _OUTPUTS.items()} | {"dir": str(out)},
    }
    if run.dist.is_main:
        run.folder.write_summary(summary)
        if run.tb is not None:
            run.tb.close()
        if st.last_top1 is not None:
            target = ""
            if cfg.target_top1 is not None:
                target = f" (>= {cfg.target_top1:g}% target {'met' if summary['target_met'] else 'NOT met'})"
            run.console.info(
                f"val {run.task.score_label} {st.last_top1:.1f}%{target} in {format_time(wall)}; best "
                f"{st.best_top1:.1f}% "
                f"(epoch {st.best_epoch}), {summary['images_per_s']:.0f} img/s"
            )
            run.console.info(f"wrote {out}/: last.pth, best.pth, metrics.jsonl, summary.json")
    return summary


_OUTPUTS = {
    "last": "last.pth",
    "best": "best.pth",
    "metrics": "metrics.jsonl",
    "config": "config.yaml",
    "summary": "summary.json",
}


def run_training(
    cfg: TrainConfig,
    resume: Optional[Dict[str, Any]] = None,
    resume_path: Optional[Path] = None,
    config_name: Optional[str] = None,
    task: Optional[Task] = None,
) -> Dict[str, Any]:
    """Train as configured (under torchrun: this process's share); returns the summary (also in summary.json)."""
    dist = rt.init_distributed(cfg.device)
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    threads_before = torch.get_num_threads()
    path = Path(rt.broadcast_object(str(choose_folder(cfg.output, cfg.model, resume_path))))
    folder = RunFolder(path, resuming=resume is not None)
    run: Optional[Run] = None
    together = False  # (every rank leaves at the same point: see rt.cleanup)
    try:
        run = setup(cfg, dist, task or get_task(cfg.task), resume, config_name, folder)
        error: Optional[LitvitError] = None
        if dist.is_main:
            try:
                folder.open()
                folder.write_config(cfg.to_dict(), run.resolved)
                if resume is not None:
                    folder.trim_metrics(run.state.epoch)
                if cfg.tensorboard:
                    run.tb = folder.tensorboard()
            except LitvitError as e:
                error = e
        error = rt.broadcast_object(error)  # every rank stops alike when rank 0 cannot take the folder
        if error is not None:
            raise error
        announce(run, resume_path)
        try:
            fit(run)
        except RuntimeError as e:
            ran_out = out_of_resources(e)
            if ran_out is None:
                raise
            what, lower = ran_out
            if not run.saved_desc:
                raise OutOfResources(f"{what}: run again with {lower}") from None
            resume = f"`litvit train --resume {folder.path}` with {lower}"
            raise OutOfResources(f"{what}: continue from last.pth ({run.saved_desc}) by {resume}") from None
        summary = finish(run)
        together = True
        return summary
    except RunInterrupted:  # a stop the ranks agreed on
        together = True
        raise
    finally:  # leave the process as it was (runs can be started from Python, e.g. by tests)
        if dist.is_main:
            folder.close(started=run is not None and run.started)
        torch.use_deterministic_algorithms(deterministic_before)
        torch.set_num_threads(threads_before)
        rt.cleanup(together)
