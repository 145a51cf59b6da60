"""The vocabularies every command shares, and the parsers of their values. Plain Python (no torch), so that the
command line can describe itself quickly; `litvit.runtime` turns the names into devices and dtypes."""

from typing import Any, Sequence, Tuple, Union

from .errors import ConfigError

__all__ = [
    "BAD_IMAGE_MODES",
    "DEVICES",
    "MAX_IMG_SIZE",
    "TASKS",
    "PRECISIONS",
    "check_crop_pct",
    "check_img_size",
    "parse_key_value",
    "parse_size",
    "to_2tuple",
]

# fp32 (alias 'off', the older spelling of `litvit train --amp`), bf16 / fp16 autocast, or auto (bf16 on GPUs that
# have it, else fp16; fp32 on CPU).
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "off")
DEVICES = ("auto", "cpu", "cuda")  # and cuda:N where a command takes one device
# What to do with an image file that cannot be read: skip it (counted and named) or stop with an error.
BAD_IMAGE_MODES = ("skip", "error")
# What `litvit train --task` / `litvit eval --task` take: a task's name and its short form.
TASKS = ("classification", "cls", "detection", "det", "segmentation", "seg")
# The largest --img-size a command takes: far above any resolution the models are trained or evaluated at, and
# below the sizes whose input alone (3 x N x N floats) outgrows a machine's memory and gets the process killed.
MAX_IMG_SIZE = 4096


def check_img_size(size: Any, flag: str = "--img-size") -> None:
    """A resolution flag's value (None: the model's own), refused before any model is built or image is read."""
    if size is None:
        return
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_IMG_SIZE:
        raise ConfigError(f"{flag} must be a whole number of pixels from 1 to {MAX_IMG_SIZE}, got {size!r}")


def check_crop_pct(value: Any, flag: str = "--crop-pct") -> None:
    """The eval centre-crop fraction (None: the model's own): in (0, 1], 1 meaning a resize without a crop."""
    if value is not None and not 0.0 < value <= 1.0:
        raise ConfigError(f"{flag} must be in (0, 1] (1: resize without a crop), got {value}")


def parse_key_value(text: str) -> Tuple[str, Any]:
    """'KEY=VALUE' -> (key, YAML value): `alpha=0.5` -> ('alpha', 0.5), `local_ws=[0,0,4,1]` -> a list."""
    import yaml

    if "=" not in text:
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        raise ValueError(f"cannot read the value of {text!r}: write it as YAML (e.g. alpha=0.5)") from None


def to_2tuple(size: Union[int, Sequence[int]], name: str = "img_size") -> Tuple[int, int]:
    """An int or an (H, W) pair -> (H, W)."""
    if isinstance(size, int) and not isinstance(size, bool):
        return (size, size)
    try:
        out = () if isinstance(size, str) else tuple(int(s) for s in size)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        out = ()
    if len(out) != 2:
        raise ValueError(f"{name} must be an int or (H, W), got {size!r}")
    return out  # type: ignore[return-value]


def parse_size(text: Union[str, int]) -> Tuple[int, int]:
    """'14' -> (14, 14), '20x30' -> (20, 30) (command-line sizes)."""
    parts = str(text).lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values, default=0) < 1:
        raise ValueError(f"bad size {text!r}: use N or HxW with positive integers, e.g. 14 or 20x30")
    return (values[0], values[-1])
