"""The one table of litvit's model variants: every consumer (the package's MODELS, the dense backbones, checkpoint
identification, the README model table, the benchmarks) reads it, and nothing else lists variants.

Plain data, no torch: the command line reads it to print its help quickly.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

__all__ = ["ALPHA_TAGS", "VARIANTS", "Variant", "backbone_names", "get_variant", "released_names"]

# LITv2-S trained with other Lo-Fi head fractions (the paper's alpha ablation, release v1.1): tag -> alpha.
ALPHA_TAGS: Dict[str, float] = {
    "in1k_alpha0": 0.0,
    "in1k_alpha0.2": 0.2,
    "in1k_alpha0.4": 0.4,
    "in1k_alpha0.5": 0.5,
    "in1k_alpha0.7": 0.7,
    "in1k_alpha0.9": 0.9,
    "in1k_alpha1": 1.0,
}


@dataclass(frozen=True)
class Variant:
    """One row: a timm model (at one creation setting) and what is known about it."""

    name: str  # timm model name
    family: str  # 'litv2', 'lit' (LIT-S/M/B) or 'lit_ti'
    label: str  # the papers' name
    top1: Optional[float] = None  # ImageNet-1K top-1 of the released weights (official READMEs); None: no weights
    dense: Tuple[str, ...] = ()  # dense backbones the official code has: 'det', 'seg'
    tags: Tuple[str, ...] = ()  # timm pretrained tags of its released checkpoints
    kwargs: Dict[str, Any] = field(default_factory=dict)  # creation keywords of this row (e.g. img_size=384)
    bench: bool = False  # in the paper's speed comparison (`litvit bench` default set)

    @property
    def released(self) -> bool:
        return self.top1 is not None

    @property
    def title(self) -> str:
        """The timm name with this row's keywords, e.g. 'litv2_b (img_size=384)'."""
        return self.name + (
            "" if not self.kwargs else " (" + ", ".join(f"{k}={v}" for k, v in self.kwargs.items()) + ")"
        )


DENSE = ("det", "seg")

VARIANTS: Tuple[Variant, ...] = (
    Variant("litv2_s", "litv2", "LITv2-S", 82.0, DENSE, ("in1k", *ALPHA_TAGS), bench=True),
    Variant("litv2_m", "litv2", "LITv2-M", 83.3, DENSE, ("in1k",), bench=True),
    Variant("litv2_b", "litv2", "LITv2-B", 83.6, DENSE, ("in1k",), bench=True),
    Variant("litv2_b", "litv2", "LITv2-B 384", 84.7, (), ("in1k_384",), kwargs={"img_size": 384}),
    Variant("litv2_nano", "litv2", "LITv2-nano"),  # no released weights: the small model of `litvit train`
    Variant("lit_ti", "lit_ti", "LIT-Ti", 81.1, DENSE, ("in1k",), bench=True),
    Variant("lit_s", "lit", "LIT-S", 81.5, DENSE, ("in1k",), bench=True),
    Variant("lit_m", "lit", "LIT-M", 83.0, DENSE, ("in1k",)),
    Variant("lit_b", "lit", "LIT-B", 83.4, DENSE, ("in1k",)),
)


def _unique(names: Tuple[str, ...]) -> Tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def released_names() -> Tuple[str, ...]:
    """timm names with released ImageNet weights, in table order."""
    return _unique(tuple(v.name for v in VARIANTS if v.released))


def backbone_names() -> Tuple[str, ...]:
    """timm names that have a detection / segmentation backbone."""
    return _unique(tuple(v.name for v in VARIANTS if v.dense))


def get_variant(name: str) -> Variant:
    """The first row of timm name `name` (its default creation setting)."""
    for v in VARIANTS:
        if v.name == name:
            return v
    raise KeyError(name)
