"""litvit: LIT and LITv2 (HiLo attention) vision transformers, exact to the official weights, registered with timm.

import timm, litvit
model = timm.create_model("litv2_s", num_classes=10)
"""

from . import layers, models
from .layers import HiLo
from .models import LIT, LITBackbone, LITTi, LITTiBackbone, LITv2, LITv2Backbone, create_backbone

__version__ = "0.1.0"

MODELS = ("litv2_s", "litv2_m", "litv2_b", "lit_ti", "lit_s", "lit_m", "lit_b")

__all__ = [
    "HiLo",
    "LIT",
    "LITBackbone",
    "LITTi",
    "LITTiBackbone",
    "LITv2",
    "LITv2Backbone",
    "MODELS",
    "create_backbone",
    "layers",
    "models",
]
