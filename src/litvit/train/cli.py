"""`litvit train` (and `python -m litvit.train`, the form torchrun runs)."""

import argparse
import os
import sys
from typing import List, Optional

from ..checkpoint import CheckpointError
from ..data.errors import BadImageError, DataError
from .checkpoint import CheckpointSaveError
from .config import DEFAULT_CONFIG, ConfigError, add_config_arguments, config_names

DESCRIPTION = f"""Train a LIT / LITv2 model (any timm model) with the paper's recipe on timm's training stack.

With no arguments: litv2_nano on the embedded handwritten digits (no download), under a minute on 2 CPU cores.
Configs: {", ".join(config_names())} (--config NAME or a YAML file); flags override config values.
Multi-process / multi-node: torchrun --nproc_per_node N -m litvit.train --config litv2_s --data /imagenet"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        help=f"a shipped config ({', '.join(config_names())}; default {DEFAULT_CONFIG}) or a YAML file of settings",
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        metavar="RUN",
        help="continue an interrupted run: its folder or checkpoint (default: --output's, else the latest in runs/)",
    )
    add_config_arguments(parser)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model (default: litv2_nano on the embedded digits, under a minute on a CPU)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run_cli)


def one_line(e: BaseException) -> str:
    """The message of `e`; for an error re-raised from a data-loader worker, the original error's message."""
    msg = str(e.strerror if isinstance(e, OSError) and e.strerror and not e.filename else e)
    if "Original Traceback" in msg:
        last = msg.strip().splitlines()[-1]
        msg = last.partition(": ")[2] or last
    return msg.strip().splitlines()[0] if msg.strip() else type(e).__name__


def run_cli(args: argparse.Namespace, prog: str = "litvit train") -> int:
    from .checkpoint import find_resume_checkpoint, load_train_checkpoint
    from .config import build_config, overrides_from_args
    from .engine import NonFiniteLossError, run_training

    rank = int(os.environ.get("RANK", "0"))

    def report(e: BaseException, code: int) -> int:
        everywhere = getattr(e, "same_on_all_ranks", False) or (
            isinstance(e, (ConfigError, CheckpointError, FileNotFoundError, DataError))
            and not isinstance(e, BadImageError)
        )
        if rank == 0 or not everywhere:
            where = f" (rank {rank})" if rank else ""
            print(f"{prog}{where}: {one_line(e)}", file=sys.stderr, flush=True)
        return code

    resume_path = None
    try:
        overrides = overrides_from_args(args)
        resume_ckpt = None
        config_name = args.config or DEFAULT_CONFIG
        if args.resume is not None:
            if args.config:
                raise ConfigError(
                    "--config and --resume together: a resumed run keeps its own config (in its checkpoint); "
                    "override single settings with flags"
                )
            resume_path = find_resume_checkpoint(args.resume, overrides.get("output"))
            resume_ckpt = load_train_checkpoint(resume_path)
            base = resume_ckpt["config"]
            if "model" in overrides and overrides["model"] != base["model"]:
                raise CheckpointError(
                    f"{resume_path} is a {base['model']} run, not {overrides['model']}: drop --model to resume it, "
                    "or start a new run (without --resume) for the other model"
                )
            config_name = resume_ckpt.get("config_name") or "resumed"
            cfg = build_config(base=base, overrides=overrides)
        else:
            cfg = build_config(args.config, overrides)
        run_training(cfg, resume_ckpt, resume_path, config_name)
    except (NonFiniteLossError, CheckpointSaveError) as e:
        return report(e, 1)
    except (ConfigError, DataError, CheckpointError, FileNotFoundError) as e:
        return report(e, 2)
    except KeyboardInterrupt:
        if rank == 0:
            print(
                f"\n{prog}: interrupted; continue with `litvit train --resume` (from the last checkpoint)",
                file=sys.stderr,
            )
        return 130
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="litvit train", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    return run_cli(parser.parse_args(argv))
