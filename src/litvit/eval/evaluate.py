"""`litvit eval`: a model and its weights, the paper's eval transform, top-1 / top-5 over every rank.

The metric itself is the classification task's (litvit.tasks.classification.evaluate), the data plumbing is
litvit.data.build's, and a litvit training checkpoint is read through its format module (litvit.train.checkpoint).
"""

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import timm
import torch
from torch import nn

from .. import runtime as rt
from ..checkpoint import load_exactly, read_metadata, unwrap_state_dict, writable
from ..data.build import default_workers, eval_loader, val_dataset
from ..data.transforms import data_config, eval_transform
from ..errors import CheckpointError, ConfigError, DataError, refused_settings
from ..models import identify
from ..options import check_img_size
from ..tasks.classification import check_input_size, check_model_name, evaluate
from ..train.checkpoint import DAMAGED, is_train_checkpoint, model_of, read_any
from .results import write_json

__all__ = ["evaluate", "load_eval_model", "model_data_config", "run_eval"]


def _released(model_name: str, kwargs: Dict[str, Any]) -> nn.Module:
    """A model with its released weights (downloaded by timm), or an error that says to pass --checkpoint."""
    check_model_name(model_name)
    from timm.models import get_pretrained_cfg

    pcfg = get_pretrained_cfg(model_name)
    if pcfg is None or not (pcfg.url or pcfg.hf_hub_id or pcfg.file):
        raise ConfigError(f"{model_name} has no released weights to download: pass --checkpoint FILE")
    try:
        with refused_settings(model_name):
            return timm.create_model(model_name, pretrained=True, **kwargs)
    except (OSError, RuntimeError) as e:  # no network, a refused download, a corrupt cached file
        raise CheckpointError(
            f"cannot get the released weights of {model_name} ({str(e).splitlines()[0]}): download the file and "
            "pass --checkpoint FILE"
        ) from None


def load_eval_model(
    model_name: Optional[str],
    checkpoint: Optional[str],
    ema: bool = False,
    model_kwargs: Optional[Dict[str, Any]] = None,
    img_size: Optional[int] = None,
    raw: Optional[Dict[str, Any]] = None,
) -> Tuple[nn.Module, Dict[str, Any]]:
    """The model to evaluate and what is known about it ({'classes', 'config'} for litvit training checkpoints).

    litvit training checkpoints (last.pth / best.pth) rebuild their own model (their weights, or the EMA weights
    with `ema`); any other file (official release, litvit convert output, timm-style state_dict) goes through
    timm.create_model(..., pretrained=True, pretrained_cfg_overlay=dict(file=...)), with the class count of the
    file's head. `raw`: the checkpoint file already read.
    """
    check_img_size(img_size)
    kwargs = dict(model_kwargs or {})
    if img_size:
        kwargs["img_size"] = img_size
    if checkpoint is None:
        if model_name is None:
            raise ConfigError("pass --model NAME (and --checkpoint FILE, or the released weights are downloaded)")
        return _released(model_name, kwargs), {}
    path = Path(checkpoint)
    raw = raw if raw is not None else read_any(path)
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
        _, build = model_of(raw)
        with refused_settings(trained):
            model = timm.create_model(trained, **{**build, **kwargs})
        does_not_fit = f"{checkpoint!r} ({key}) does not fit the {trained} it says it holds"
        load_exactly(model, raw[key], does_not_fit, DAMAGED)
        return model, {"classes": raw.get("classes"), "config": config, "model_name": trained}
    if ema:
        raise CheckpointError(
            f"--ema reads the EMA weights of a litvit training checkpoint; {checkpoint!r} is not one: drop --ema"
        )
    sd = unwrap_state_dict(raw)
    saved = _saved_model(path)  # what `litvit convert` wrote into a .safetensors file's metadata
    classes = None
    if saved is not None and (model_name is None or model_name.split(".")[0] == saved[0]):
        model_name, kwargs, classes = saved[0], {**saved[1], **kwargs}, saved[2]
    if model_name is None:
        found = identify(sd)
        if found is None:
            raise CheckpointError(f"cannot tell which model {checkpoint!r} holds: pass --model NAME")
        model_name, found_kwargs = found
        kwargs = {**found_kwargs, **kwargs}
    check_model_name(model_name)
    head = sd.get("head.weight")
    if head is not None:
        kwargs.setdefault("num_classes", int(head.shape[0]))
    del raw, sd
    overlay = dict(file=os.fspath(path))
    with refused_settings(model_name):
        model = timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    return model, {"model_name": model_name, "classes": classes}


def _saved_model(path: Path) -> Optional[Tuple[str, Dict[str, Any], Optional[List[str]]]]:
    """(model name, creation keywords, class names or None) from a `litvit convert` file's metadata; None for other
    files and for converted dense backbones (which `litvit eval` does not classify with)."""
    meta = read_metadata(path)
    if not meta.get("litvit_model") or meta.get("litvit_backbone"):
        return None
    try:
        kwargs = json.loads(meta.get("litvit_kwargs") or "{}")
        classes = json.loads(meta["litvit_classes"]) if meta.get("litvit_classes") else None
    except ValueError:
        kwargs = classes = None
    if not isinstance(kwargs, dict) or not (classes is None or isinstance(classes, list)):
        raise CheckpointError(f"{str(path)!r} has unreadable litvit metadata: convert the checkpoint again")
    return meta["litvit_model"], kwargs, classes


def model_data_config(
    model: nn.Module,
    info: Dict[str, Any],
    img_size: Optional[int] = None,
    crop_pct: Optional[float] = None,
    crop_mode: Optional[str] = None,
    interpolation: Optional[str] = None,
) -> Dict[str, Any]:
    """The eval data config of a model from `load_eval_model`: the values given, else a litvit run's own (its
    resolution and crop), else the model's; a resolution the model cannot take is refused here."""
    run_cfg = info.get("config") or {}

    def given(value: Any, key: str) -> Any:
        return value if value is not None else run_cfg.get(key)

    dcfg = data_config(
        model,
        given(img_size, "img_size"),
        given(crop_pct, "crop_pct"),
        given(crop_mode, "crop_mode"),
        given(interpolation, "interpolation"),
    )
    check_input_size(model, dcfg["input_size"][-1])
    return dcfg


def run_eval(args: Any) -> Dict[str, Any]:
    """`litvit eval` with parsed arguments: results on rank 0's screen (and --json), returned on every rank."""
    if args.batch_size < 1:
        raise ConfigError("--batch-size must be >= 1")
    if args.workers is not None and args.workers < 0:
        raise ConfigError(f"--workers must be >= 0 (0: load in this process), got {args.workers}")
    if args.max_size is not None and args.max_size < 1:
        raise ConfigError(f"--max-size must be >= 1 (the longest image side, in pixels), got {args.max_size}")
    check_img_size(args.img_size)
    if args.json and not writable(args.json):
        raise ConfigError(f"--json {args.json!r} cannot be written: choose a file in a writable folder")
    dist = rt.init_distributed(args.device)
    together = False  # (every rank leaves at the same point: see rt.cleanup)
    try:
        slow_bf16 = rt.slow_bf16_note(dist.device, rt.autocast_dtype(args.amp, dist.device))
        if slow_bf16 and dist.rank == 0:
            print(f"warning: {slow_bf16}; use --amp fp32", file=sys.stderr)
        results = _run_eval(args, dist)
        together = True
        return results
    finally:
        rt.cleanup(together)


def _run_eval(args: Any, dist: rt.DistInfo) -> Dict[str, Any]:
    raw = read_any(Path(args.checkpoint)) if args.checkpoint is not None else None
    task = getattr(args, "task", None)
    if task is None and raw is not None and is_train_checkpoint(raw):
        task = raw["config"].get("task", "classification")
    if task not in (None, "classification", "cls"):
        from .dense import run_dense_eval

        return run_dense_eval(args, dist, task, raw)
    device = dist.device
    if device.type == "cuda":  # one input size: cuDNN keeps each conv's fastest kernel (timm's validate does too)
        torch.backends.cudnn.benchmark = True
    amp = rt.autocast_dtype(args.amp, device)
    model, info = load_eval_model(
        args.model, args.checkpoint, args.ema, dict(args.model_kwargs), args.img_size, raw=raw
    )
    del raw
    run_cfg = info.get("config") or {}
    dcfg = model_data_config(model, info, args.img_size, args.crop_pct, args.crop_mode, args.interpolation)
    size = dcfg["input_size"][-1]
    data = args.data
    if data is None:
        if not run_cfg:
            raise ConfigError("pass --data: the validation folder (class sub-folders of images)")
        data = run_cfg.get("data")  # None = the embedded digits the run trained on
    classes = info.get("classes")
    split = args.split if args.data is not None else run_cfg.get("val_split", args.split)
    dataset = val_dataset(data, eval_transform(dcfg), split, args.bad_images, classes, size)
    num_classes = getattr(model, "num_classes", None)
    if classes is None and num_classes is not None and len(dataset.classes) != num_classes:
        raise DataError(
            f"the model has {num_classes} classes but {data!r} has {len(dataset.classes)} class folders: evaluate "
            "on the classes it was trained on (class folders in sorted order give the class indices)"
        )
    channels_last = args.channels_last if args.channels_last is not None else device.type == "cuda"
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    workers = args.workers if args.workers is not None else default_workers(data is None, dist.local_world_size)
    loader = eval_loader(dataset, args.batch_size, workers, dist.rank, dist.world_size, device.type == "cuda")
    t = time.time()
    res = evaluate(model, loader, device, amp, channels_last)
    seconds = time.time() - t
    res.update(
        model=info.get("model_name") or args.model,
        checkpoint=args.checkpoint,
        data=data or "digits (embedded, val split)",
        seconds=round(seconds, 2),
        world_size=dist.world_size,
        input_size=list(dcfg["input_size"]),
        crop_pct=dcfg["crop_pct"],
        crop_mode=dcfg["crop_mode"],
        interpolation=dcfg["interpolation"],
    )
    res["bad_images"] = [p for p, _ in res.pop("bad")]
    if dist.is_main:
        _print(res, dcfg, seconds, args.json)
    return res


def _print(res: Dict[str, Any], dcfg: Dict[str, Any], seconds: float, json_path: Optional[str]) -> None:

    if res["bad_images"]:
        print(
            f"warning: skipped {len(res['bad_images'])} unreadable image file(s): {', '.join(res['bad_images'][:10])}",
            file=sys.stderr,
        )
    print(
        f"{res['model']} on {res['data']} ({res['images']} images, {dcfg['input_size'][-1]}px, "
        f"crop {dcfg['crop_pct']:g} {dcfg['crop_mode']}): top-1 {res['top1']:.2f}%  top-5 {res['top5']:.2f}%  "
        f"loss {res['loss']:.4f}  ({seconds:.1f}s, {res['images'] / max(seconds, 1e-9):.0f} img/s)",
        flush=True,
    )
    if json_path:
        write_json(json_path, res)
