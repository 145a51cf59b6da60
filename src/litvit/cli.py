"""`litvit` command line."""

import argparse
import sys
from typing import List, Optional


def _models(args: argparse.Namespace) -> int:
    from .model_table import markdown_table

    print(markdown_table(measured=args.measured))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="litvit", description="LIT and LITv2 vision transformers")
    sub = parser.add_subparsers(dest="command", required=True)
    models = sub.add_parser("models", help="print the table of models (parameters, GMACs, paper top-1)")
    models.add_argument(
        "--measured", action="store_true", help="also run each model once under torch's FlopCounterMode (slower)"
    )
    models.set_defaults(func=_models)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
