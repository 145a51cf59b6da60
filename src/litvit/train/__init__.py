"""`litvit train`: the paper's recipes on timm's training stack, torchrun / DDP, exact resume.

from litvit.train import build_config, run_training
summary = run_training(build_config("nano", {"epochs": 2}))

The package is small on purpose: `config` (settings), `run` (setting a run up and `run_training`), `loop` (the
task-agnostic loop), `build` (optimizer, schedule, EMA, DDP), `checkpoint` (the training-checkpoint format),
`output` (the run folder), `log`, `optim` (the official parameter groups) and `cli`.
"""

from typing import Any

from ..errors import ConfigError, NonFiniteLossError
from .config import TrainConfig, build_config, config_names, load_yaml, resolve_lrs

__all__ = [
    "ConfigError",
    "NonFiniteLossError",
    "TrainConfig",
    "build_config",
    "config_names",
    "load_yaml",
    "resolve_lrs",
    "run_training",
]


def __getattr__(name: str) -> Any:
    # `run_training` pulls in torch and timm; importing it on first use keeps `litvit train --help` (which reads
    # only the settings) fast. There is no import cycle behind this: tests/test_imports.py checks the graph.
    if name == "run_training":
        from .run import run_training

        return run_training
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
