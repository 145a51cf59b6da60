"""The papers' dense models on torchvision: RetinaNet, Mask R-CNN, Faster R-CNN and Semantic FPN with a LIT / LITv2
backbone, built and loaded as the official mmdet / mmseg configs and checkpoints define them (docs/dense.md)."""

from .official import from_official, load_dense_checkpoint
from .registry import create_dense_model, list_dense_models

__all__ = ["create_dense_model", "from_official", "list_dense_models", "load_dense_checkpoint"]
