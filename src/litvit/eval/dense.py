"""`litvit eval --task det | seg`: COCO mAP of a detector, mIoU of a segmenter, with the task's own metric and data
code (litvit.tasks.detection / segmentation), so that a run's validation and `litvit eval` agree exactly.

The model comes from a litvit training checkpoint (its config rebuilds it; --ema for its EMA weights) or from an
official mmdet / mmseg release (`--model retinanet_litv2_s --checkpoint retinanet_litv2_s_fpn_1x_coco.pth`), whose
classes are those of the data (COCO's 80 categories in id order, ADE20K's 150).
"""

import os
import sys
import time
from typing import Any, Dict, Optional

from .. import runtime as rt
from ..checkpoint import load_exactly
from ..data.build import default_workers, eval_loader
from ..data.loader import list_collate
from ..errors import CheckpointError, ConfigError
from ..tasks import get_task
from ..train.checkpoint import DAMAGED, is_train_checkpoint
from ..train.config import TrainConfig, task_name
from .results import write_json

__all__ = ["run_dense_eval"]


def _config(args: Any, task: str, raw: Optional[Dict[str, Any]]) -> TrainConfig:
    """The run's configuration (a training checkpoint's, else the defaults) with this command's overrides."""
    if raw is not None and is_train_checkpoint(raw):
        values = dict(raw["config"])
        trained = task_name(values.get("task", "classification"))
        if trained != task:
            raise CheckpointError(
                f"{args.checkpoint!r} holds a {trained} model, not a {task} one: pass --task {trained} (or leave "
                "--task out)"
            )
        if args.model is not None and args.model != values["model"]:
            raise CheckpointError(
                f"{args.checkpoint!r} holds a {values['model']} trained by litvit, not {args.model}: pass --model "
                f"{values['model']} (or leave --model out)"
            )
    else:
        if args.model is None:
            raise ConfigError(
                f"--task {task} needs --model NAME (e.g. retinanet_litv2_s) with an official mmdet / mmseg "
                "--checkpoint, or a litvit training checkpoint"
            )
        values = {"task": task, "model": args.model}
    if args.ema and (raw is None or not is_train_checkpoint(raw)):
        raise CheckpointError("--ema reads the EMA weights of a litvit training checkpoint: drop --ema")
    if args.data is not None:
        values.update(data=args.data, val_split=args.split)
    for key, value in (("img_size", args.img_size), ("max_size", args.max_size)):
        if value is not None:
            values[key] = value
    if args.model_kwargs:
        values["model_kwargs"] = {**values.get("model_kwargs", {}), **dict(args.model_kwargs)}
    values.update(bad_images=args.bad_images, bad_annotations=args.bad_annotations, pretrained=None)
    return TrainConfig.from_dict(values, source="the checkpoint's config and the eval flags")


def run_dense_eval(args: Any, dist: rt.DistInfo, task: str, raw: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Evaluate as `litvit eval` was asked (see the module docstring); results on rank 0's screen (and --json)."""
    from ..tasks.detection import build_dense_model, size_kwargs

    task = task_name(task)
    if args.checkpoint is None:
        raise ConfigError(f"--task {task} needs --checkpoint: a litvit training checkpoint or an official release")
    cfg = _config(args, task, raw)
    trained = raw is not None and is_train_checkpoint(raw)
    if cfg.data is not None:
        cfg.data = os.path.abspath(cfg.data)
    the_task = get_task(task)
    classes = list(raw["classes"]) if trained else None
    dataset = the_task.eval_set(cfg, classes)  # type: ignore[attr-defined]
    values = vars(cfg)
    extra = size_kwargs(values) if task == "detection" else {}
    if trained:
        assert raw is not None and classes is not None
        key = "model_ema" if args.ema else "model"
        if key not in raw:
            raise CheckpointError(f"{args.checkpoint!r} has no EMA weights (the run had no --model-ema): drop --ema")
        model = build_dense_model(values, len(classes), load_pretrained=False, **extra)
        does_not_fit = f"{args.checkpoint!r} ({key}) does not fit the {cfg.model} it says it holds"
        load_exactly(model, raw[key], does_not_fit, DAMAGED)
    else:
        num_classes = len(dataset.coco.classes) if task == "detection" else dataset.num_classes  # type: ignore
        model = build_dense_model(values, num_classes, load_pretrained=False, checkpoint=args.checkpoint, **extra)
    del raw
    device = dist.device
    amp = rt.autocast_dtype(args.amp, device)
    model.to(device)
    embedded = cfg.data is None
    workers = args.workers if args.workers is not None else default_workers(embedded, dist.local_world_size)
    batch = args.batch_size if task == "detection" else 1
    loader = eval_loader(dataset, batch, workers, dist.rank, dist.world_size, device.type == "cuda", list_collate)
    t = time.time()
    res = the_task.evaluate(model, loader, device, amp)
    seconds = time.time() - t
    res.update(
        task=task,
        model=cfg.model,
        checkpoint=args.checkpoint,
        data=cfg.data or "scenes (embedded, val split)",
        seconds=round(seconds, 2),
        world_size=dist.world_size,
    )
    res["bad_images"] = [p for p, _ in res.pop("bad")]
    if dist.is_main:
        if res["bad_images"]:
            listed = ", ".join(res["bad_images"][:10])
            print(f"warning: skipped {len(res['bad_images'])} unreadable file(s): {listed}", file=sys.stderr)
        notes = the_task.val.notes("annotations") if task == "detection" else the_task.val_notes  # type: ignore
        for note in notes:
            print(f"warning: {note}", file=sys.stderr)
        print(
            f"{cfg.model} on {res['data']} ({res['images']} images): {the_task.metrics_line(res)[4:]}  "
            f"({seconds:.1f}s)",
            flush=True,
        )
        if args.json:
            write_json(args.json, res)
    return res
