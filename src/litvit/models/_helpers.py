"""The timm glue every model file shares: pretrained-config defaults and the one `build_model` behind every
`@register_model` entry point."""

from typing import Any, Callable, Dict, TypeVar

from timm.models import build_model_with_cfg
from torch import nn

ModelT = TypeVar("ModelT", bound=nn.Module)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

LITV2_PAPER = "Fast Vision Transformers with HiLo Attention (NeurIPS 2022), https://arxiv.org/abs/2205.13213"
LIT_PAPER = "Less is More: Pay Less Attention in Vision Transformers (AAAI 2022), https://arxiv.org/abs/2105.14217"
LITV2_RELEASES = "https://github.com/ziplab/LITv2/releases/download/"
LIT_RELEASES = "https://github.com/ziplab/LIT/releases/download/"


def cfg(url: str = "", paper: str = LITV2_PAPER, **kwargs) -> Dict[str, Any]:
    """timm pretrained config with the papers' evaluation settings (bicubic, crop 0.875 at 224, ImageNet stats)."""
    return {
        "url": url,
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "fixed_input_size": False,
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "first_conv": "patch_embed.proj",
        "classifier": "head",
        "license": "apache-2.0",
        "paper_ids": paper,
        # Loading goes through the model's own `load_pretrained` (official layouts, no foreign pickle code).
        "custom_load": True,
        **kwargs,
    }


def prefer_own_loader(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """Route a `pretrained_cfg_overlay=dict(file=...)` (or url) through the model's own `load_pretrained`.

    timm switches `custom_load` off when an overlay names a weight source; for litvit models the own loader is the
    one that reads official training checkpoints (foreign pickles), safetensors, and reports mismatches clearly, so
    it stays on unless the caller sets `custom_load` explicitly.
    """
    overlay = kwargs.get("pretrained_cfg_overlay")
    if overlay and any(overlay.get(k) for k in ("file", "url")) and "custom_load" not in overlay:
        kwargs = dict(kwargs, pretrained_cfg_overlay=dict(overlay, custom_load=True))
    return kwargs


def build_model(
    model_cls: Callable[..., ModelT],
    variant: str,
    pretrained: bool,
    filter_fn: Callable[[Dict[str, Any], nn.Module], Dict[str, Any]],
    **kwargs: Any,
) -> ModelT:
    """timm's `build_model_with_cfg` for a litvit classifier: weights through the model's own loader, and
    `features_only=True` served by `forward_intermediates` (timm's getter feature wrapper)."""
    kwargs = prefer_own_loader(kwargs)
    out_indices = kwargs.pop("out_indices", (0, 1, 2, 3))
    return build_model_with_cfg(
        model_cls,
        variant,
        pretrained,
        pretrained_filter_fn=filter_fn,
        feature_cfg=dict(feature_cls="getter", out_indices=out_indices),
        **kwargs,
    )
