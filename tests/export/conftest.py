"""Tiny models of every family and their exports, shared by the export tests (module- / session-scoped: an export
takes seconds, a model milliseconds)."""

import torch

from litvit.models import LIT, LITTi, LITv2
from litvit.models.backbones import create_backbone

# The reduced configurations of the official parity fixtures (tests/data/official): every layer kind, 4 stages.
TINY = dict(embed_dim=16, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8], num_classes=10, img_size=64)
TINY_TI = dict(img_size=64, embed_dims=[16, 32, 40, 64], num_heads=[1, 2, 5, 8], depths=[1, 1, 2, 1], num_classes=10)

# Odd sides (padding at the patch embedding and in the HiLo windows, a 1 x N last map), odd batches, the smallest
# side the eager models accept (29) and a side above the tracing size.
SIZES = [(1, 97, 131), (3, 100, 37), (1, 150, 250), (3, 29, 29), (1, 61, 30)]


def tiny_model(family: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if family == "litv2":
        model = LITv2(**TINY)
    elif family == "lit":  # LIT-S/M/B: relative-position tables sized for 64 pixels, resized at other sizes
        model = LIT(**TINY)
    elif family == "lit_ti":  # position embeddings stored for 64 pixels
        model = LITTi(**TINY_TI)
    elif family == "lit_backbone":  # dense backbone: four NCHW outputs, tables for a 96-pixel reference
        model = create_backbone(
            "lit_s", task="seg", embed_dim=16, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8], pretrain_img_size=96
        )
    else:
        raise KeyError(family)
    for m in model.modules():  # non-trivial BatchNorm statistics and offsets, so the deformable sampling matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
        if hasattr(m, "conv_offset"):
            torch.nn.init.normal_(m.conv_offset.weight, std=0.3)
    return model.eval()
