"""`litvit train`'s flags, one per TrainConfig field, generated from the fields (their help, kind and choices), so
that a new field is a new flag without a second list to keep in step."""

import argparse
import dataclasses
from typing import Any, Dict, Optional, Tuple

from ..options import parse_key_value
from .config import DEFAULT_CONFIG, FIELDS, field_kind, load_yaml


def key_value_arg(text: str) -> Tuple[str, Any]:
    """argparse type of KEY=VALUE flags (`--model-kwargs alpha=0.5`)."""
    try:
        return parse_key_value(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_config_arguments(parser: argparse.ArgumentParser, defaults_from: Optional[str] = DEFAULT_CONFIG) -> None:
    """One flag per TrainConfig field (`--batch-size`, `--no-model-ema`, ...); unset flags stay out of the namespace
    so that the YAML's values apply. The help shows the defaults of `defaults_from` (the config a plain
    `litvit train` runs), since those are what a flag left out gives."""
    shipped = load_yaml(defaults_from) if defaults_from else {}
    groups: Dict[str, Any] = {}
    for f in FIELDS.values():
        group_name = f.metadata.get("group", "run")
        group = groups.get(group_name) or groups.setdefault(group_name, parser.add_argument_group(group_name))
        flag = "--" + f.name.replace("_", "-")
        kind = field_kind(f.name)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        default = shipped.get(f.name, default)
        help_text = f"{f.metadata['help']} [default: {default}]".replace("%", "%%")
        kwargs: Dict[str, Any] = dict(dest=f.name, default=argparse.SUPPRESS, help=help_text)
        if kind == "bool":
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif kind == "Tuple":
            group.add_argument(flag, nargs=2, type=float, metavar=("A", "B"), **kwargs)
        elif kind == "Dict":
            group.add_argument(flag, nargs="+", type=key_value_arg, metavar="KEY=VALUE", **kwargs)
        elif kind == "List":
            group.add_argument(flag, nargs="*", type=float, metavar="N", **kwargs)
        else:
            if "choices" in f.metadata:
                kwargs["choices"] = f.metadata["choices"]
            group.add_argument(flag, type=str, metavar=kind.upper() if kind != "str" else None, **kwargs)


def overrides_from_args(args: argparse.Namespace) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for name in FIELDS:
        if hasattr(args, name):
            value = getattr(args, name)
            if field_kind(name) == "Dict":
                value = dict(value)
            elif field_kind(name) == "List":
                value = list(value)
            out[name] = value
    return out
