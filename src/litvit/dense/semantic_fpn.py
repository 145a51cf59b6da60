"""Semantic FPN (Kirillov et al. 2019) as the official LIT / LITv2 ADE20K configs build it (mmseg `fpn_r50_lit.py`).

Backbone (segmentation variant: output norms on all four stages) + FPN P2-P5 (torchvision's, no extra level) +
mmseg's `FPNHead`: level i goes through max(1, log2(stride_i / 4)) blocks of conv3x3 (no bias) + BatchNorm + ReLU,
each followed by a bilinear x2 upsample below stride 4; the four maps are summed at stride 4 (bilinear resize,
align_corners=False), then Dropout2d(0.1) and a 1x1 classifier. mmseg resizes the stride-4 logits to the input size
bilinearly (align_corners=False): `forward` does the same, `decode` returns the stride-4 logits.
The official configs use SyncBatchNorm in the head (`nn.SyncBatchNorm.convert_sync_batchnorm` gives it back).

`aux_weight > 0` adds an auxiliary head for training (mmseg's `auxiliary_head`, an FCNHead with one conv; mmseg puts
it on the backbone's stage 3, here it reads the FPN's stride-16 level): in training mode `forward` then returns
{"out": logits, "aux": the auxiliary head's stride-16 logits} (torchvision's segmentation keys) and the loss adds
`aux_weight` x the auxiliary cross-entropy. It supervises the deep, coarse maps directly, where a digit's or an
object's identity is computed: on the embedded scenes it made the classes start to be told apart 2-3x sooner. The
official configs have none (aux_weight 0: the default, and the only value whose state_dict is the official one).
"""

import math
from typing import Dict, List, Sequence, Union

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


class AuxHead(nn.Sequential):
    """mmseg's FCNHead with one conv (`num_convs=1, concat_input=False`): conv3x3 + BN + ReLU, Dropout2d, 1x1."""

    def __init__(self, num_classes: int, in_channels: int, channels: int, dropout: float = 0.1):
        conv_seg = nn.Conv2d(channels, num_classes, 1)
        nn.init.normal_(conv_seg.weight, std=0.01)
        nn.init.zeros_(conv_seg.bias)
        super().__init__(Conv2dNormActivation(in_channels, channels, 3, bias=False), nn.Dropout2d(dropout), conv_seg)


class SemanticFPN(nn.Module):
    """`forward(x)`: ImageNet-normalised (B, 3, H, W) -> logits (B, K, H, W) (in training with an auxiliary head:
    {"out": logits, "aux": (B, K, H / 16, W / 16)}); `decode(x)`: logits at stride 4."""

    AUX_LEVEL = 2  # the FPN level the auxiliary head reads: stride 16

    def __init__(
        self, backbone: BackboneFPN, num_classes: int, channels: int = 128, dropout: float = 0.1, aux_weight: float = 0
    ):
        super().__init__()
        self.backbone = backbone
        self.decode_head = FPNHead(num_classes, backbone.out_channels, channels, dropout=dropout)
        self.aux_weight = float(aux_weight)
        if self.aux_weight > 0:
            self.aux_head = AuxHead(num_classes, backbone.out_channels, channels, dropout)
        self.num_classes = num_classes
        self.out_channels = backbone.out_channels

    def decode(self, x: Tensor) -> Tensor:
        return self.decode_head(list(self.backbone(x).values()))

    def forward(self, x: Tensor) -> Union[Tensor, Dict[str, Tensor]]:
        feats = list(self.backbone(x).values())
        logits = F.interpolate(self.decode_head(feats), size=x.shape[-2:], mode="bilinear", align_corners=False)
        if self.training and self.aux_weight > 0:
            return {"out": logits, "aux": self.aux_head(feats[self.AUX_LEVEL])}
        return logits


def build_semantic_fpn(
    body: nn.Module,
    num_classes: int,
    fpn_channels: int = 256,
    channels: int = 128,
    dropout: float = 0.1,
    aux_weight: float = 0,
) -> SemanticFPN:
    """Semantic FPN on `body` (a litvit segmentation backbone returning its four stages); `fpn_channels` and the
    head's `channels` are the official 256 and 128 by default; `aux_weight` > 0 adds the auxiliary head (above)."""
    if isinstance(aux_weight, bool) or not isinstance(aux_weight, (int, float)) or not 0 <= aux_weight < math.inf:
        raise ValueError(f"aux_weight must be a number >= 0 (0: no auxiliary head; mmseg uses 0.4), got {aux_weight!r}")
    backbone = BackboneFPN(body, stage_channels(body), fpn_channels)
    return SemanticFPN(backbone, num_classes, channels, dropout, aux_weight)
