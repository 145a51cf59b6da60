"""`litvit train` (and `python -m litvit.train`, the form torchrun runs). Reads only the settings at import time,
so that `--help` is instant; the run itself is in litvit.train.run."""

import argparse
import sys
from typing import List, Optional

from ..command import add_command, main_of
from ..errors import CheckpointError, ConfigError
from .config import DEFAULT_CONFIG, TASK_DEFAULT_CONFIGS, config_names
from .flags import add_config_arguments

_DET, _SEG = TASK_DEFAULT_CONFIGS["detection"], TASK_DEFAULT_CONFIGS["segmentation"]
DESCRIPTION = f"""Train a LIT / LITv2 model (any timm model) with the paper's recipe on timm's training stack.

With no arguments: litv2_nano on the embedded handwritten digits (no download), under a minute on 2 CPU cores;
the defaults shown below are that config's ({DEFAULT_CONFIG}). `--task det` / `--task seg` train a detector /
segmenter on the same loop ({_DET} / {_SEG}: small models on embedded scenes of the digits; --data DIR for
COCO / ADE20K layouts; configs retinanet_litv2_s, mask_rcnn_litv2_s, semantic_fpn_litv2_s for the papers' runs).
Configs: {", ".join(config_names())} (--config NAME or a YAML file); flags override config values.
Multi-process / multi-node: torchrun --nproc_per_node N -m litvit.train --config litv2_s --data /imagenet"""

INTERRUPT_HINT = "continue with `litvit train --resume` (from the last checkpoint)"


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
    parser.set_defaults(func=run_cli, interrupt_hint=INTERRUPT_HINT)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers,
        "train",
        "train a model (default: litv2_nano on the embedded digits, under a minute on a CPU)",
        DESCRIPTION,
    )
    add_arguments(parser)


def run_cli(args: argparse.Namespace) -> int:
    """Build the configuration (a shipped / YAML config, or a resumed run's own) and train."""
    from .checkpoint import find_resume_checkpoint, load_train_checkpoint
    from .config import build_config, default_config, task_name
    from .flags import overrides_from_args
    from .run import run_training

    overrides = overrides_from_args(args)
    config_name = args.config or default_config(overrides)
    if args.resume is None:
        run_training(build_config(args.config, overrides), config_name=config_name)
        return 0
    if args.config:
        raise ConfigError(
            "--config and --resume together: a resumed run keeps its own config (in its checkpoint); "
            "override single settings with flags"
        )
    resume_path = find_resume_checkpoint(args.resume, overrides.get("output"))
    ckpt = load_train_checkpoint(resume_path)
    # The run goes on in the folder holding its checkpoint (moved or copied since, perhaps), not the one it was
    # started in: the config's output may name a deleted folder, or a relative path from another working folder.
    base = {**ckpt["config"], "output": None if "output" in overrides else str(resume_path.parent)}
    if "model" in overrides and overrides["model"] != base["model"]:
        raise CheckpointError(
            f"{resume_path} is a {base['model']} run, not {overrides['model']}: drop --model to resume it, "
            "or start a new run (without --resume) for the other model"
        )
    if "opt" in overrides and overrides["opt"].lower() != str(base.get("opt", "adamw")).lower():
        raise CheckpointError(
            f"{resume_path} trains with --opt {base.get('opt', 'adamw')}, whose state it holds: drop --opt to resume "
            f"it, or start a new run from its weights (--pretrained {resume_path} --opt {overrides['opt']})"
        )
    if "task" in overrides and task_name(overrides["task"]) != task_name(base.get("task", "classification")):
        raise CheckpointError(
            f"{resume_path} is a {task_name(base.get('task', 'classification'))} run: drop --task to resume it, "
            "or start a new run (without --resume) for the other task"
        )
    cfg = build_config(base=base, overrides=overrides)
    run_training(cfg, ckpt, resume_path, ckpt.get("config_name") or "resumed")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    return main_of("litvit train", DESCRIPTION, add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
