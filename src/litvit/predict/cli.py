"""`litvit predict`: the top-k classes of images. Imports no torch here, so that `litvit --help` stays instant; the
model and the images are loaded by `run_cli`."""

import argparse
import sys
import time

from ..command import add_command
from ..options import DEVICES, PRECISIONS

DESCRIPTION = """The most probable classes of each image, with their probabilities, under the model's own eval
transform (the paper's resize + centre crop, or a litvit run's own). See docs/predict.md.

Inputs: image files, folders (searched recursively for image files) and glob patterns ('photos/**/*.jpg', quoted).
Class names: a litvit training checkpoint's own, ImageNet-1k's for 1000-class weights (the released ones), else
'class i'. Without --checkpoint the model's released weights are used (downloaded once by timm); --random-weights
tries the pipeline without any weights. Unreadable files are named on stderr and skipped.

  litvit predict cat.jpg dog.png --model litv2_s --checkpoint litv2_s.pth
  litvit predict photos/ --checkpoint runs/litv2_nano-0101-1200/best.pth --output preds.jsonl"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers, "predict", "top-k classes of images, folders or glob patterns (table, .jsonl or .csv)", DESCRIPTION
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGE|FOLDER|GLOB", help="what to classify")
    p.add_argument("--model", help="timm name (litv2_s, litv2_b.in1k_384, ...); default: the checkpoint's")
    p.add_argument(
        "--checkpoint",
        help="weights file: official release, litvit convert output, timm state_dict or litvit training run "
        "(default: the released weights, downloaded)",
    )
    p.add_argument("--random-weights", action="store_true", help="no weights at all (to try the pipeline)")
    p.add_argument("--ema", action="store_true", help="a litvit training checkpoint's EMA weights")
    p.add_argument("--top-k", type=int, default=5, help="classes shown per image [default: 5]")
    p.add_argument("--batch-size", type=int, default=32, help="[default: 32]")
    p.add_argument("--workers", type=int, default=0, help="image-decoding processes [default: 0, in this process]")
    p.add_argument("--img-size", type=int, help="resolution (default: the model's; LIT / LITv2 take any)")
    p.add_argument("--device", default="auto", help=f"{', '.join(DEVICES)} or cuda:N [default: auto]")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="fp32, bf16, fp16 or auto [default: fp32]")
    p.add_argument("--output", metavar="FILE", help="also write the predictions to FILE.jsonl or FILE.csv")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr [default: when stderr is a terminal]",
    )
    p.add_argument("--quiet", action="store_true", help="no table on screen (with --output)")
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    from .output import format_table
    from .run import predict

    if args.random_weights:
        print(
            "warning: --random-weights: the classes shown say nothing about the images (pass --checkpoint for answers)",
            file=sys.stderr,
        )
    start = time.perf_counter()
    records = predict(
        args.inputs,
        args.model,
        args.checkpoint,
        top_k=args.top_k,
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
        img_size=args.img_size,
        pretrained=not args.random_weights,
        ema=args.ema,
        workers=args.workers,
        progress=args.progress,
        output=args.output,
    )
    if not args.quiet:
        print(format_table(records), flush=True)
    wrote = f"; wrote {args.output}" if args.output else ""
    print(f"litvit predict: {len(records)} image(s) in {time.perf_counter() - start:.1f}s{wrote}", file=sys.stderr)
    return 0
