"""The training loop, generic over a task: epochs of optimizer steps, validation, checkpoints, logs.

`fit(run)` is the whole loop; `train_one_epoch` is one pass over the training loader. The task (see litvit.tasks)
computes each batch's loss and the validation metrics; everything here is the same for every task.
"""

import json
import math
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
from timm.utils import dispatch_clip_grad

from .. import runtime as rt
from ..errors import CheckpointSaveError, LitvitError, NonFiniteLossError, RunInterrupted, out_of_resources
from .checkpoint import atomic_save, make_checkpoint, rng_state, set_rng_state
from .log import format_time, progress_bar
from .state import Run


def save(run: Run, names: Tuple[str, ...] = ("last.pth",)) -> None:
    """Write the checkpoint(s) on rank 0 (all ranks take part: their random states go in); a failure on rank 0 is
    raised on every rank."""
    rngs = rt.all_gather_object(rng_state())
    error: Optional[str] = None
    if run.dist.is_main:
        st = run.state
        progress = type(st)(**{**vars(st), "wall_time": st.wall_time + time.time() - run.t0})
        ck = make_checkpoint(
            model_name=run.cfg.model,
            model=run.model.state_dict(),
            optimizer=run.optimizer.state_dict(),
            scheduler=run.scheduler.state_dict(),
            progress=progress,
            rng=rngs,
            config=run.cfg.to_dict(),
            resolved=run.resolved,
            classes=run.parts.labels,
            config_name=run.config_name,
            model_ema=run.ema.module.state_dict() if run.ema is not None else None,
            scaler=run.scaler.state_dict() if run.scaler is not None else None,
        )
        try:
            for name in names:
                atomic_save(ck, run.folder.path / name)
        except CheckpointSaveError as e:
            error = str(e)
    error = rt.broadcast_object(error)
    if error is not None:
        raise CheckpointSaveError(28, error)
    run.saved_desc = f"{run.state.where()}, optimizer step {run.state.update}"
    run.started = True


def check_loss(run: Run, loss: torch.Tensor, n: int, epoch: int, batch: int) -> float:
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
    stats = rt.all_reduce_sum(stats).tolist()
    if stats[2] > 0:
        last = run.folder.path / "last.pth"
        kept = (
            f"the last good checkpoint, {last} ({run.saved_desc}), is kept"
            if run.saved_desc
            else "no checkpoint had been written yet"
        )
        local = value.item()
        what = "NaN" if math.isnan(local) else "infinite" if math.isinf(local) else "not finite on another process"
        raise NonFiniteLossError(
            f"the loss is {what} at epoch {epoch + 1}, step {batch + 1} of {run.num_batches} (optimizer step "
            f"{run.state.update + 1}, lr {run.optimizer.param_groups[0]['lr']:.3g}); stopped before applying "
            f"it, {kept}. Lower --lr, keep --clip-grad on or try --amp off, then --resume"
        )
    return stats[0] / max(stats[1], 1.0)


def eta(run: Run) -> float:
    st = run.state
    per_update = st.train_time / max(st.update, 1)
    remaining = run.total_epochs * run.updates_per_epoch - st.update
    return max(0.0, remaining * per_update + (run.total_epochs - st.epoch) * run.eval_time)


def session_rate(run: Run) -> float:
    return run.state.train_images / max(run.state.train_time, 1e-9)


def report_step(run: Run, bar: Any, epoch: int, b: int, loss: float) -> None:
    st, cfg = run.state, run.cfg
    lr = run.optimizer.param_groups[0]["lr"]
    if bar is not None:
        bar.update(cfg.batch_size * cfg.accum_steps * run.dist.world_size)
        bar.set_postfix_str(f"loss {loss:.3f} lr {lr:.2e} run ETA {format_time(eta(run))}")
    elif st.update % cfg.log_interval == 0:
        run.console.info(
            f"  epoch {epoch + 1}/{run.total_epochs} step {b + 1}/{run.num_batches} loss {loss:.4f} "
            f"lr {lr:.2e} {session_rate(run):.0f} img/s ETA {format_time(eta(run))}"
        )
    if run.tb is not None and st.update % cfg.log_interval == 0:
        run.tb.add_scalar("train/loss", loss, st.update)
        run.tb.add_scalar("train/lr", lr, st.update)


def report_bad(run: Run, extra: List[Tuple[str, str]]) -> int:
    """Warn (once per file) about unreadable images met by any rank; returns the total count."""
    mine, run.bad_pending = run.bad_pending + list(extra), []
    seen = set(run.state.bad_images)
    new: Dict[str, str] = {}
    for rank_list in rt.all_gather_object(mine):
        for path, reason in rank_list:
            if path not in seen and path not in new:
                new[path] = reason
    if new:
        run.state.bad_images = sorted(seen | set(new))
        listed = "; ".join(f"{p} ({r})" for p, r in list(new.items())[:10])
        more = f"; ... ({len(new) - 10} more)" if len(new) > 10 else ""
        run.console.warn(
            f"skipped {len(new)} unreadable image file(s): {listed}{more}. Replace or remove them "
            "(or pass --bad-images error to stop at such files)"
        )
    return len(run.state.bad_images)


def log_samples(run: Run, epoch: int, start: int) -> None:
    """Record which samples each rank trains on this epoch (samples.jsonl; `--log-samples`)."""
    n = (run.num_batches - start) * run.cfg.batch_size
    everyone = rt.all_gather_object([i for i, _ in list(run.sampler)[:n]])
    if run.dist.is_main:
        with open(run.folder.path / "samples.jsonl", "a") as f:
            for r, idx in enumerate(everyone):
                f.write(json.dumps({"epoch": epoch + 1, "rank": r, "first_step": start, "indices": idx}) + "\n")


def train_one_epoch(run: Run, epoch: int) -> Tuple[float, float]:
    """One pass over the training loader (from the saved position when resuming); returns (mean loss, images / s)."""
    cfg, st = run.cfg, run.state
    start = st.batch if st.epoch == epoch else 0
    if start == 0:
        st.epoch_loss_sum, st.epoch_images, st.epoch_time = 0.0, 0, 0.0
    run.sampler.set_epoch(epoch, skip=start * cfg.batch_size)
    if cfg.log_samples:
        log_samples(run, epoch, start)
    run.module.train()
    world = run.dist.world_size
    per_batch = cfg.batch_size * world
    bar = None
    if run.dist.is_main:
        desc = f"epoch {epoch + 1}/{run.total_epochs}"
        bar = progress_bar(cfg.progress, run.num_batches * per_batch, start * per_batch, desc)
    params = [p for p in run.module.parameters() if p.requires_grad]
    t_last = time.time()
    # (an epoch saved whole but not validated resumes past its end: no loader iterator, whose seed draw would move
    # the random stream away from the uninterrupted run's)
    batches = zip(range(start, run.num_batches), run.train_loader) if start < run.num_batches else ()
    for b, batch in batches:
        run.bad_pending += batch[-1]
        step_now = (b + 1) % cfg.accum_steps == 0
        sync = run.module.no_sync() if run.dist.distributed and not step_now else nullcontext()
        with sync:
            with rt.autocast(run.dist.device, run.amp):
                loss, n = run.task.loss(run.module, batch, run.dist.device)
            mean_loss = check_loss(run, loss, n, epoch, b)
            if run.scaler is not None:
                run.scaler(
                    loss / cfg.accum_steps,
                    run.optimizer,
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
                    run.optimizer.step()
        st.epoch_loss_sum += mean_loss * n * world
        st.epoch_images += n * world
        if not step_now:
            continue
        run.optimizer.zero_grad(set_to_none=True)
        st.update += 1
        st.batch = b + 1
        if cfg.sched_on == "step":
            run.scheduler.step_update(num_updates=st.update)
        if run.ema is not None:
            run.ema.update(run.model, step=st.update)
        now = time.time()
        st.epoch_time += now - t_last
        st.train_time += now - t_last
        st.train_images += cfg.batch_size * cfg.accum_steps * world
        t_last = now
        report_step(run, bar, epoch, b, mean_loss)
        saved = bool(cfg.save_every_steps) and st.update % cfg.save_every_steps == 0 and b + 1 < run.num_batches
        if saved:
            save(run)
            run.console.info(
                f"  saved {run.folder.path / 'last.pth'} (epoch {epoch + 1}, step {b + 1}"
                f"/{run.num_batches}, optimizer step {st.update})"
            )
        stop_if_asked(run, saved)
    if bar is not None:
        bar.close()
    return st.epoch_loss_sum / max(st.epoch_images, 1), st.epoch_images / max(st.epoch_time, 1e-9)


@contextmanager
def stop_on_interrupt(run: Run) -> Iterator[None]:
    """The first Ctrl-C (SIGINT) or SIGTERM (`kill`, `docker stop`, Kubernetes) asks the loop to stop at the end of
    the current optimizer step and save there (`--resume` continues bit for bit, as from a `--save-every-steps`
    save); a second one stops at once. Under torchrun (which passes its SIGINT / SIGTERM on to every rank, once)
    the ranks agree on the step: all stop at the first step whose end any of them reached asked. Outside the main
    thread, they stop at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def ask(signum: int, _frame: Any) -> None:
        run.stop_asked = signum
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        again = "Ctrl-C again" if signum == signal.SIGINT else "a second SIGTERM"
        run.console.warn(f"stopping at the end of this optimizer step, saved for --resume ({again}: at once)")

    previous = {sig: signal.signal(sig, ask) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_if_asked(run: Run, saved: bool) -> None:
    """End the run (saved) if a stop was asked, on any rank: every rank calls this at the same points."""
    asked = run.stop_asked
    if run.dist.distributed:  # one small all-reduce an optimizer step; every rank acts on its answer alone (a
        asked = rt.max_over_ranks(asked, run.dist.device)  # signal arriving during it counts at the next step)
    if asked:
        if not saved:
            save(run)
        under = f" under torchrun with {run.dist.world_size} processes" if run.dist.distributed else ""
        stopped = RunInterrupted(
            f"stopped at {run.state.where()} (optimizer step {run.state.update}), saved in "
            f"{run.folder.path / 'last.pth'}: continue with `litvit train --resume {run.folder.path}`{under}"
        )
        if asked == signal.SIGTERM:
            stopped.exit_code = 128 + signal.SIGTERM  # 143, as a process ended by SIGTERM
        raise stopped


def validate(run: Run) -> Dict[str, Any]:
    """The task's validation metrics of the model (and of its EMA, as ema_<metric>), every rank with rank 0's
    BatchNorm statistics."""
    t = time.time()
    rt.broadcast_buffers(run.model)
    device = run.dist.device
    metrics = run.task.evaluate(run.model, run.val_loader, device, run.amp)
    if run.ema is not None:
        rt.broadcast_buffers(run.ema.module)
        ema = run.task.evaluate(run.ema.module, run.val_loader, device, run.amp)
        metrics.update({f"ema_{k}": v for k, v in ema.items() if isinstance(v, (int, float)) and k != "images"})
    run.eval_time = time.time() - t
    return metrics


def validate_keeping_the_epoch(run: Run, epoch: int) -> Dict[str, Any]:
    """`validate(run)`; if it fails (unreadable validation data, say), the epoch's training is saved first, with the
    random state of the epoch's end, so that `--resume` goes straight to its validation and continues bit for bit.
    Single-process runs only: with several processes one rank may fail alone, mid-collective."""
    before_validation = rng_state()
    try:
        return validate(run)
    except (LitvitError, RuntimeError) as e:
        ran_out = out_of_resources(e)
        if not isinstance(e, LitvitError) and ran_out is None:
            raise
        if run.dist.world_size == 1:
            set_rng_state(before_validation)
            save(run)
            run.console.warn(
                f"epoch {epoch + 1} trained but could not be validated; it is saved in "
                f"{run.folder.path / 'last.pth'}: {'lower ' + ran_out[1] if ran_out else 'fix the validation data'}, "
                "then --resume"
            )
        raise


def fit(run: Run) -> None:
    """Train from the run's position to its last epoch: an epoch, a validation, checkpoints and a metrics line."""
    cfg, st, score = run.cfg, run.state, run.task.score
    with stop_on_interrupt(run):
        for epoch in range(st.epoch, run.total_epochs):
            t_epoch = time.time()
            loss, ips = train_one_epoch(run, epoch)
            if cfg.sched_on == "epoch":
                run.scheduler.step(epoch + 1)
            val = validate_keeping_the_epoch(run, epoch)
            bad_total = report_bad(run, val["bad"])
            st.epoch, st.batch = epoch + 1, 0
            st.last_top1, st.last_top5 = val[score], val.get("top5")
            improved = val[score] > st.best_top1
            if improved:
                st.best_top1, st.best_top5, st.best_epoch = val[score], val.get("top5", 0.0), epoch + 1
            record: Dict[str, Any] = {
                "epoch": epoch + 1,
                "step": st.update,
                "train_loss": round(loss, 6),
                "lr": run.optimizer.param_groups[0]["lr"],
            }
            record.update({f"val_{k}": round(v, 6) for k, v in val.items() if isinstance(v, float)})
            record.update(
                val_images=val["images"],
                images_per_s=round(ips, 1),
                epoch_time_s=round(time.time() - t_epoch, 2),
                elapsed_s=round(st.wall_time + time.time() - run.t0, 2),
                bad_images=bad_total,
            )
            save(run, ("last.pth", "best.pth") if improved else ("last.pth",))
            if run.dist.is_main:
                run.folder.append_metrics(record)
                if run.tb is not None:
                    for k in ("val_top1", "val_top5", "val_loss", "train_loss", "images_per_s"):
                        if k in record:
                            run.tb.add_scalar(k.replace("_", "/", 1), record[k], epoch + 1)
            run.console.info(
                f"epoch {epoch + 1}/{run.total_epochs}  loss {loss:.4f}  {run.task.metrics_line(val)}  {ips:.0f} img/s"
                f"  {format_time(time.time() - t_epoch)}  ETA {format_time(eta(run))}"
            )
            if epoch + 1 < run.total_epochs:  # (asked during the last validation: the run is complete, let it end)
                stop_if_asked(run, saved=True)  # (asked during the validation: the epoch is saved above)
