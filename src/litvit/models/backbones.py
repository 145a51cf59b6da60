"""Dense-prediction backbones of the official detection (mmdet) and segmentation (mmseg) code.

`create_backbone("litv2_s", task="det")` builds the backbone whose state_dict equals the official one, with the
official dense hyper-parameters (less stochastic depth for LITv2-M/B, 800- or 512-pixel reference tables for LIT).
Each returns a list of four NCHW maps at strides 4, 8, 16 and 32, for any input size. Which variants have one is
`litvit.variants`' `dense` column.
"""

from typing import Any

from torch import nn

from ..variants import backbone_names, get_variant
from .lit import LIT_ARCHS, LITBackbone
from .lit_ti import LIT_TI_ARCH, LITTiBackbone
from .litv2 import LITV2_ARCHS, LITV2_DENSE_DROP_PATH, LITv2Backbone

__all__ = ["create_backbone", "BACKBONES", "LITv2Backbone", "LITBackbone", "LITTiBackbone"]

BACKBONES = backbone_names()


def create_backbone(name: str, task: str = "det", **kwargs: Any) -> nn.Module:
    """Build the `task` ('det' or 'seg') backbone of model `name`; keyword arguments override the architecture."""
    if task not in ("det", "seg"):
        raise ValueError(f"task must be 'det' (detection) or 'seg' (segmentation), got {task!r}")
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    family = get_variant(name).family
    if family == "litv2":
        return LITv2Backbone(
            task=task, **{**LITV2_ARCHS[name], "drop_path_rate": LITV2_DENSE_DROP_PATH[name], **kwargs}
        )
    if family == "lit":
        return LITBackbone(task=task, **{**LIT_ARCHS[name], **kwargs})
    return LITTiBackbone(**{**LIT_TI_ARCH, **kwargs})  # the same backbone serves detection and segmentation
