"""Semantic FPN (Kirillov et al. 2019) as the official LIT / LITv2 ADE20K configs build it (mmseg `fpn_r50_lit.py`).

Backbone (segmentation variant: output norms on all four stages) + FPN P2-P5 (torchvision's, no extra level) +
mmseg's `FPNHead`: level i goes through max(1, log2(stride_i / 4)) blocks of conv3x3 (no bias) + BatchNorm + ReLU,
each followed by a bilinear x2 upsample below stride 4; the four maps are summed at stride 4 (bilinear resize,
align_corners=False), then Dropout2d(0.1) and a 1x1 classifier. mmseg resizes the stride-4 logits to the input size
bilinearly (align_corners=False): `forward` does the same, `decode` returns the stride-4 logits.
The official configs use SyncBatchNorm in the head (`nn.SyncBatchNorm.convert_sync_batchnorm` gives it back).
"""

import math
from typing import List, Sequence

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops.misc import Conv2dNormActivation

from .fpn import BackboneFPN, stage_channels

__all__ = ["FPNHead", "SemanticFPN", "build_semantic_fpn"]


class _Upsample2x(nn.Module):
    """Bilinear x2 (align_corners=False), mmseg's `Upsample(scale_factor=2)`: output size = floor(2 * input)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class FPNHead(nn.Module):
    """mmseg's FPNHead: per-level conv blocks to stride 4, summed, then the classifier (`conv_seg`)."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 256,
        channels: int = 128,
        strides: Sequence[int] = (4, 8, 16, 32),
        dropout: float = 0.1,
    ):
        super().__init__()
        self.scale_heads = nn.ModuleList()
        for stride in strides:
            blocks: List[nn.Module] = []
            for k in range(max(1, int(math.log2(stride) - math.log2(strides[0])))):
                blocks.append(Conv2dNormActivation(in_channels if k == 0 else channels, channels, 3, bias=False))
                if stride != strides[0]:
                    blocks.append(_Upsample2x())
            self.scale_heads.append(nn.Sequential(*blocks))
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        nn.init.normal_(self.conv_seg.weight, std=0.01)
        nn.init.zeros_(self.conv_seg.bias)

    def forward(self, feats: List[Tensor]) -> Tensor:
        out = self.scale_heads[0](feats[0])  # (B, channels, H / 4, W / 4)
        for head, feat in zip(self.scale_heads[1:], feats[1:]):
            out = out + F.interpolate(head(feat), size=out.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv_seg(self.dropout(out))  # (B, K, H / 4, W / 4)


class SemanticFPN(nn.Module):
    """`forward(x)`: ImageNet-normalised (B, 3, H, W) -> logits (B, K, H, W); `decode(x)`: logits at stride 4."""

    def __init__(self, backbone: BackboneFPN, num_classes: int, channels: int = 128, dropout: float = 0.1):
        super().__init__()
        self.backbone = backbone
        self.decode_head = FPNHead(num_classes, backbone.out_channels, channels, dropout=dropout)
        self.num_classes = num_classes
        self.out_channels = backbone.out_channels

    def decode(self, x: Tensor) -> Tensor:
        return self.decode_head(list(self.backbone(x).values()))

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(self.decode(x), size=x.shape[-2:], mode="bilinear", align_corners=False)


def build_semantic_fpn(
    body: nn.Module, num_classes: int, fpn_channels: int = 256, channels: int = 128, dropout: float = 0.1
) -> SemanticFPN:
    """Semantic FPN on `body` (a litvit segmentation backbone returning its four stages); `fpn_channels` and the
    head's `channels` are the official 256 and 128 by default."""
    return SemanticFPN(BackboneFPN(body, stage_channels(body), fpn_channels), num_classes, channels, dropout)
