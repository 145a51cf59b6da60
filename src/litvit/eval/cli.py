"""`litvit eval` (and `python -m litvit.eval`, e.g. under torchrun): top-1 / top-5 on a validation set."""

import argparse
import json
import sys
import time
from typing import Any, Dict, List, Optional

import yaml

DESCRIPTION = """Top-1 / top-5 of a model + checkpoint on an ImageFolder validation set, with the paper's eval
transform (resize 256 bicubic + centre crop 224; the 384 model resizes to 384 x 384 without a crop).

The checkpoint can be an official LIT / LITv2 release, a `litvit convert` output, a timm-style state_dict or a
litvit training checkpoint (last.pth / best.pth; --ema for its EMA weights). Results do not depend on the batch size
or on the number of processes (torchrun --nproc_per_node N -m litvit.eval ...)."""


def _kv(text: str) -> Any:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="timm name (litv2_s, litv2_b.in1k_384, lit_ti, ...); default: the checkpoint's")
    p.add_argument("--checkpoint", help="weights file (default: the model's released weights, downloaded)")
    p.add_argument(
        "--data",
        help="validation folder (<class>/<image>) or a folder holding it (see --split); default: "
        "a litvit run's own validation data",
    )
    p.add_argument("--split", default="val", help="sub-folder of --data to evaluate, when it exists [default: val]")
    p.add_argument("--batch-size", type=int, default=100, help="[default: 100]")
    p.add_argument("--workers", type=int, default=None, help="data-loading processes [default: up to 8]")
    p.add_argument("--img-size", type=int, help="evaluation resolution (default: the model's)")
    p.add_argument("--crop-pct", type=float, help="centre-crop fraction (default: the model's, 0.875 at 224)")
    p.add_argument("--crop-mode", choices=("center", "squash"), help="squash = resize to size x size, no crop")
    p.add_argument("--interpolation", help="resize interpolation (default: the model's, bicubic)")
    p.add_argument(
        "--model-kwargs",
        nargs="+",
        type=_kv,
        default=[],
        metavar="KEY=VALUE",
        help="extra model keywords (e.g. alpha=0.5)",
    )
    p.add_argument("--ema", action="store_true", help="evaluate a litvit training checkpoint's EMA weights")
    p.add_argument("--amp", choices=("off", "bf16", "fp16"), default="off", help="autocast dtype [default: off]")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument(
        "--bad-images",
        choices=("skip", "error"),
        default="skip",
        help="unreadable image files: skip (counted, named) or error [default: skip]",
    )
    p.add_argument("--json", metavar="FILE", help="also write the results to this JSON file")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="top-1 / top-5 of a model + checkpoint on a validation set (paper's eval transform)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run_cli)


def run_eval(args: argparse.Namespace) -> Dict[str, Any]:
    import os

    import torch

    from ..data.errors import DataError
    from ..data.transforms import data_config, eval_transform
    from ..train.amp import amp_dtype
    from ..train.distributed import init_distributed
    from .evaluate import eval_loader, evaluate, load_eval_model, val_dataset

    if args.batch_size < 1:
        raise DataError("--batch-size must be >= 1")
    dist_info = init_distributed(args.device)
    model, info = load_eval_model(args.model, args.checkpoint, args.ema, dict(args.model_kwargs), args.img_size)
    run_cfg = info.get("config") or {}
    data = args.data
    if data is None:
        if not run_cfg:
            raise DataError("pass --data: the validation folder (class sub-folders of images)")
        data = run_cfg.get("data")  # None = the embedded digits the run trained on
    dcfg = data_config(
        model,
        args.img_size or run_cfg.get("img_size"),
        args.crop_pct or run_cfg.get("crop_pct"),
        args.crop_mode or run_cfg.get("crop_mode"),
        args.interpolation or run_cfg.get("interpolation"),
    )
    classes = info.get("classes")
    split = args.split if args.data is not None else run_cfg.get("val_split", args.split)
    dataset = val_dataset(data, eval_transform(dcfg), split, args.bad_images, classes, dcfg["input_size"][-1])
    num_classes = getattr(model, "num_classes", None)
    if classes is None and num_classes is not None and len(dataset.classes) != num_classes:
        raise DataError(
            f"the model has {num_classes} classes but {data!r} has {len(dataset.classes)} class folders: evaluate "
            "on the classes it was trained on (class folders in sorted order give the class indices)"
        )
    device = dist_info.device
    dtype = None if args.amp == "off" else amp_dtype(args.amp, device)
    channels_last = args.channels_last if args.channels_last is not None else device.type == "cuda"
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    workers = args.workers
    if workers is None:
        workers = 0 if data is None else min(8, max(1, (os.cpu_count() or 2) // dist_info.local_world_size - 1))
    loader = eval_loader(dataset, args.batch_size, workers, dist_info.rank, dist_info.world_size, device.type == "cuda")
    t = time.time()
    res = evaluate(model, loader, device, dtype, channels_last)
    seconds = time.time() - t
    res.update(
        model=info.get("model_name") or args.model,
        checkpoint=args.checkpoint,
        data=data or "digits (embedded, val split)",
        seconds=round(seconds, 2),
        world_size=dist_info.world_size,
        input_size=list(dcfg["input_size"]),
        crop_pct=dcfg["crop_pct"],
        crop_mode=dcfg["crop_mode"],
        interpolation=dcfg["interpolation"],
    )
    res["bad_images"] = [p for p, _ in res.pop("bad")]
    if dist_info.is_main:
        if res["bad_images"]:
            print(
                f"warning: skipped {len(res['bad_images'])} unreadable image file(s): "
                f"{', '.join(res['bad_images'][:10])}",
                file=sys.stderr,
            )
        print(
            f"{res['model']} on {res['data']} ({res['images']} images, {dcfg['input_size'][-1]}px, "
            f"crop {dcfg['crop_pct']:g} {dcfg['crop_mode']}): top-1 {res['top1']:.2f}%  top-5 {res['top5']:.2f}%  "
            f"loss {res['loss']:.4f}  ({seconds:.1f}s, {res['images'] / max(seconds, 1e-9):.0f} img/s)",
            flush=True,
        )
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f, indent=2)
    return res


def run_cli(args: argparse.Namespace) -> int:
    import os

    from ..checkpoint import CheckpointError
    from ..data.errors import DataError
    from ..train.cli import one_line
    from ..train.config import ConfigError
    from ..train.distributed import cleanup

    try:
        run_eval(args)
    except (ConfigError, DataError, CheckpointError, FileNotFoundError) as e:
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"litvit eval: {one_line(e)}", file=sys.stderr)
        return 2
    finally:
        cleanup()
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="litvit eval", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    return run_cli(parser.parse_args(argv))
