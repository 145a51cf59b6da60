"""LIT, LIT-Ti and LITv2 models; importing this registers them with timm."""

from ._loading import identify, load_into
from .backbones import BACKBONES, create_backbone
from .lit import LIT, LITBackbone
from .lit_ti import LITTi, LITTiBackbone
from .litv2 import LITv2, LITv2Backbone

__all__ = [
    "BACKBONES",
    "LIT",
    "LITBackbone",
    "LITTi",
    "LITTiBackbone",
    "LITv2",
    "LITv2Backbone",
    "create_backbone",
    "identify",
    "load_into",
]
