"""`litvit train`: the paper's recipes on timm's training stack, torchrun / DDP, exact resume.

from litvit.train import build_config, run_training
summary = run_training(build_config("nano", {"epochs": 2}))
"""

from typing import Any

from .config import ConfigError, TrainConfig, build_config, config_names, load_yaml, resolve_lrs

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


def __getattr__(name: str) -> Any:  # the engine imports litvit.eval, which imports litvit.train.distributed
    if name in ("run_training", "NonFiniteLossError"):
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
