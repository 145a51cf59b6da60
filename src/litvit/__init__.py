"""litvit: LIT and LITv2 (HiLo attention) vision transformers, exact to the official weights, registered with timm.

import timm, litvit
model = timm.create_model("litv2_s", num_classes=10)
"""

import sys

from .variants import released_names

__version__ = "0.1.0"

# The timm names with released ImageNet weights (from the one table of variants, litvit.variants).
MODELS = released_names()

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
    "flops",
    "layers",
    "models",
]

# Importing litvit registers its models with timm. Only the `litvit` command's launcher (litvit_cli) defers that,
# to answer `--help` without importing torch; it registers them itself before any command runs.
if not getattr(sys.modules.get("litvit_cli"), "DEFER_MODELS", False):
    from . import flops, layers, models  # flops: litvit's FlopCounterMode formulas (deform_conv2d, SDPA kernels)
    from .layers import HiLo
    from .models import LIT, LITBackbone, LITTi, LITTiBackbone, LITv2, LITv2Backbone, create_backbone
