"""Training and evaluation transforms from timm's factory, configured from the model's pretrained config."""

from typing import Any, Callable, Dict, Optional, Sequence

from timm.data import create_transform, resolve_data_config
from timm.data.transforms import str_to_interp_mode
from torch import nn

from ..errors import ConfigError, one_line
from ..options import check_crop_pct


def check_interpolation(name: str, flag: str, training: bool = False) -> None:
    """An interpolation timm's transforms know (`random`, a random choice per image, in training only)."""
    if training and name == "random":
        return
    try:
        str_to_interp_mode(name)
    except (KeyError, AttributeError):
        extra = ", random" if training else ""
        raise ConfigError(
            f"{flag} {name!r} is not an interpolation: use bicubic, bilinear, nearest, box, hamming or lanczos{extra}"
        ) from None


def data_config(
    model: nn.Module,
    img_size: Optional[int] = None,
    crop_pct: Optional[float] = None,
    crop_mode: Optional[str] = None,
    interpolation: Optional[str] = None,
) -> Dict[str, Any]:
    """timm's data config of `model` (input size, interpolation, mean / std, crop_pct), with overrides.

    The evaluation crop follows the official trainers: resize to size / crop_pct and centre-crop (224: resize 256,
    crop 224); with crop_pct 1 (the 384 fine-tune, `TEST.CROP=False`) a direct resize to size x size, no crop.
    """
    check_crop_pct(crop_pct)
    if interpolation is not None:
        check_interpolation(interpolation, "--interpolation")
    cfg = dict(resolve_data_config(model=model))
    if img_size:
        cfg["input_size"] = (cfg["input_size"][0], img_size, img_size)
    if interpolation:
        cfg["interpolation"] = interpolation
    if crop_pct:
        cfg["crop_pct"] = crop_pct
    cfg["crop_mode"] = crop_mode or ("squash" if cfg.get("crop_pct", 0.875) >= 1.0 else "center")
    return cfg


def eval_transform(cfg: Dict[str, Any]) -> Callable:
    return create_transform(
        cfg["input_size"],
        is_training=False,
        interpolation=cfg["interpolation"],
        mean=cfg["mean"],
        std=cfg["std"],
        crop_pct=cfg["crop_pct"],
        crop_mode=cfg["crop_mode"],
    )


def train_transform(
    cfg: Dict[str, Any],
    scale: Sequence[float],
    ratio: Sequence[float],
    hflip: float,
    color_jitter: float,
    auto_augment: Optional[str],
    interpolation: str,
    re_prob: float,
    re_mode: str,
    re_count: int,
) -> Callable:
    """timm's training transform; a name timm does not know (interpolation, auto-augment policy) is a ConfigError
    here, where timm would fail with an assertion."""
    check_interpolation(interpolation, "--train-interpolation", training=True)
    try:
        return create_transform(
            cfg["input_size"],
            is_training=True,
            scale=tuple(scale),
            ratio=tuple(ratio),
            hflip=hflip,
            color_jitter=color_jitter,
            auto_augment=auto_augment,
            interpolation=interpolation,
            mean=cfg["mean"],
            std=cfg["std"],
            re_prob=re_prob,
            re_mode=re_mode,
            re_count=re_count,
        )
    except (AssertionError, KeyError, ValueError) as e:
        detail = f" ({one_line(e)})" if str(e) else ""
        raise ConfigError(
            f"--auto-augment {auto_augment!r} is not a timm policy{detail}: use e.g. rand-m9-mstd0.5-inc1, "
            "augmix-m5-w4-d2, original or none"
        ) from None
