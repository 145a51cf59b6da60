"""`litvit export`: load the model (and its weights), export it, optionally check the file against PyTorch."""

import argparse
import time
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import CheckpointError, ExportError
from ..options import parse_size
from .check import check_export, check_sizes, format_rows
from .onnx import export_onnx, require
from .program import export_aoti, export_program

SUFFIXES = {"onnx": ".onnx", "pt2": ".pt2", "aoti": ".aoti.pt2"}


def load_model(name: str, checkpoint: Any, backbone: Any) -> nn.Module:
    """The classifier (weights through litvit eval's loader) or the `det` / `seg` dense backbone of `name`."""
    if backbone is None:
        from ..eval.evaluate import load_eval_model

        return load_eval_model(name, checkpoint)[0] if checkpoint else _fresh_classifier(name)
    from ..models.backbones import BACKBONES, create_backbone

    if name not in BACKBONES:
        raise ExportError(f"{name!r} has no dense backbone: choose one of {', '.join(BACKBONES)}")
    model = create_backbone(name, task=backbone)
    if checkpoint:
        if not Path(checkpoint).is_file():
            raise CheckpointError(f"checkpoint {checkpoint!r} does not exist: pass the path of a weights file")
        model.load_pretrained(checkpoint)
    return model


def _fresh_classifier(name: str) -> nn.Module:
    import timm

    from ..tasks.classification import check_model_name

    check_model_name(name)
    print(f"litvit export: no --checkpoint, exporting {name} with random weights")
    return timm.create_model(name)


def run_export(args: argparse.Namespace) -> int:
    fmt = args.format
    if fmt == "onnx":
        require("onnx", "onnxscript")
    if args.check and fmt == "onnx":
        require("onnxruntime")
    try:
        size = parse_size(args.size) if args.size else None
    except ValueError as e:
        raise ExportError(str(e)) from None
    if args.static and size is None:
        raise ExportError("--static exports one fixed size: pass it with --size HxW")
    if not args.tolerance > 0 or args.tolerance == float("inf"):
        raise ExportError(f"--tolerance must be a number > 0 (a relative max |diff|, e.g. 1e-4), got {args.tolerance}")
    out = Path(args.out or f"{args.model.split('.')[0]}{'_' + args.backbone if args.backbone else ''}{SUFFIXES[fmt]}")
    model = load_model(args.model, args.checkpoint, args.backbone).float().cpu().eval()
    dynamic = not args.static
    start = time.perf_counter()
    if fmt == "onnx":
        export_onnx(model, out, size, dynamic=dynamic, opset=args.opset)
    elif fmt == "pt2":
        export_program(model, out, size, dynamic=dynamic)
    else:
        export_aoti(model, out, size, dynamic=dynamic)
    print(f"wrote {out} ({fmt}, {'dynamic' if dynamic else 'static'} size) in {time.perf_counter() - start:.0f}s")
    if not args.check:
        return 0
    rows = check_export(model, out, fmt, check_sizes(model, fmt, None if dynamic else size), args.tolerance)
    print(format_rows(rows, args.tolerance))
    if not all(r.ok for r in rows):
        print(f"litvit export: {out} differs from PyTorch above the tolerance")
        return 1
    return 0
