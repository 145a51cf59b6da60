"""The `litvit` command: `litvit train | eval | bench | export | models | convert`.

Each command's arguments live with its subpackage (`register(subparsers)` in litvit.train.cli, litvit.eval.cli,
litvit.bench.cli); those modules import no torch, so `litvit --help` and every `--help` answer at once. Every
command reports a `LitvitError` the same way: one line on stderr, the error's exit status (2 for bad input).
"""

import argparse
import importlib
import sys
from typing import List, Optional

from .command import run_command

# Commands that live with their subpackage: each module has `register(subparsers)` adding its parser.
COMMAND_MODULES = (
    "litvit.train.cli",
    "litvit.eval.cli",
    "litvit.predict.cli",
    "litvit.bench.cli",
    "litvit.viz.cli",
    "litvit.demo.cli",
    "litvit.export.cli",
)


def _models(args: argparse.Namespace) -> int:
    from .model_table import markdown_table

    print(markdown_table(measured=args.measured))
    return 0


def _convert(args: argparse.Namespace) -> int:
    from .convert import convert_checkpoint

    kwargs = {} if args.alpha is None else {"alpha": args.alpha}
    name, used = convert_checkpoint(args.src, args.dst, args.model, backbone=args.backbone, **kwargs)
    extra = "".join(f", {k}={v}" for k, v in used.items())
    print(f"wrote {args.dst} ({name}{extra}{', ' + args.backbone + ' backbone' if args.backbone else ''})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="litvit", description="LIT and LITv2 vision transformers")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    models = sub.add_parser("models", help="print the table of models (parameters, GMACs, paper top-1)")
    models.add_argument(
        "--measured", action="store_true", help="also run each model once under torch's FlopCounterMode (slower)"
    )
    models.set_defaults(func=_models)

    convert = sub.add_parser(
        "convert", help="official .pth -> .safetensors (no pickle at load time), model name in its metadata"
    )
    convert.add_argument("src", help="official LIT / LITv2 file (.pth), mmdet / mmseg file, or litvit checkpoint")
    convert.add_argument("dst", help="output .safetensors path")
    convert.add_argument(
        "--model",
        help="timm name (litv2_s, lit_ti, ...; recognised from the weights if omitted) or a dense model name for a "
        "released detector / segmenter file (retinanet_litv2_s, mask_rcnn_lit_ti, semantic_fpn_litv2_b, ...)",
    )
    convert.add_argument("--alpha", type=float, help="LITv2 Lo-Fi head fraction, for --model litv2_*")
    convert.add_argument(
        "--backbone", choices=("det", "seg"), help="convert into the detection / segmentation backbone (needs --model)"
    )
    convert.set_defaults(func=_convert)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(f"litvit {args.command}", args.func, args)


if __name__ == "__main__":
    sys.exit(main())
