"""`litvit eval` (and `python -m litvit.eval`, e.g. under torchrun): top-1 / top-5 on a validation set, or, with
`--task det | seg`, COCO mAP / mIoU of a detector / segmenter."""

import argparse
from typing import List, Optional

from ..command import add_command, main_of
from ..options import BAD_IMAGE_MODES, DEVICES, PRECISIONS, TASKS
from ..train.flags import key_value_arg

DESCRIPTION = """Top-1 / top-5 of a model + checkpoint on an ImageFolder validation set, with the paper's eval
transform (resize 256 bicubic + centre crop 224; the 384 model resizes to 384 x 384 without a crop).

The checkpoint can be an official LIT / LITv2 release, a `litvit convert` output, a timm-style state_dict or a
litvit training checkpoint (last.pth / best.pth; --ema for its EMA weights). Results do not depend on the batch size
or on the number of processes (torchrun --nproc_per_node N -m litvit.eval ...).

Detection / segmentation (--task det | seg, or a detection / segmentation run's checkpoint): COCO bbox mAP (and
mask mAP for Mask R-CNN) on a COCO-layout folder, mIoU on an ADE20K-layout folder (default: the run's own data);
the checkpoint is a litvit training checkpoint, or an official mmdet / mmseg release with --model (e.g.
retinanet_litv2_s)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.set_defaults(func=run_cli)
    p.add_argument(
        "--task",
        choices=TASKS,
        help="classification (cls), detection (det: COCO mAP) or segmentation (seg: mIoU); default: the "
        "checkpoint's, else classification",
    )
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
    p.add_argument(
        "--img-size", type=int, help="evaluation resolution (default: the model's; det / seg: the short side)"
    )
    p.add_argument("--max-size", type=int, help="det / seg: the longest side (default: the run's, 1333 / 2048)")
    p.add_argument("--crop-pct", type=float, help="centre-crop fraction (default: the model's, 0.875 at 224)")
    p.add_argument("--crop-mode", choices=("center", "squash"), help="squash = resize to size x size, no crop")
    p.add_argument("--interpolation", help="resize interpolation (default: the model's, bicubic)")
    p.add_argument(
        "--model-kwargs",
        nargs="+",
        type=key_value_arg,
        default=[],
        metavar="KEY=VALUE",
        help="extra model keywords (e.g. alpha=0.5)",
    )
    p.add_argument("--ema", action="store_true", help="evaluate a litvit training checkpoint's EMA weights")
    p.add_argument("--amp", choices=PRECISIONS, default="fp32", help="precision: fp32 (= off), bf16, fp16 or auto")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument(
        "--bad-images",
        choices=BAD_IMAGE_MODES,
        default="skip",
        help="unreadable image files: skip (counted, named) or error [default: skip]",
    )
    p.add_argument(
        "--bad-annotations",
        choices=BAD_IMAGE_MODES,
        default="skip",
        help="det / seg: annotations or label maps that cannot be used: skip (counted, named) or error [default: skip]",
    )
    p.add_argument("--json", metavar="FILE", help="also write the results to this JSON file")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers,
        "eval",
        "top-1 / top-5 (or --task det / seg: COCO mAP / mIoU) of a model + checkpoint on a validation set",
        DESCRIPTION,
    )
    add_arguments(parser)


def run_cli(args: argparse.Namespace) -> int:
    from .evaluate import run_eval

    run_eval(args)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    return main_of("litvit eval", DESCRIPTION, add_arguments, argv)
