"""A litvit backbone under torchvision's FeaturePyramidNetwork, wired the way the official mmdet / mmseg configs
wire their FPN neck.

torchvision's FPN computes exactly mmdet's (1x1 laterals, nearest upsampling to the lateral's size, 3x3 outputs);
only the extra levels differ: RetinaNet's P6 is a stride-2 conv on the *backbone's* C5 and P7 a stride-2 conv on P6
with no ReLU in between (mmdet `add_extra_convs='on_input'`, `relu_before_extra_convs=False`), which torchvision's
`LastLevelP6P7` cannot express, so `P6P7FromInput` does it. Mask R-CNN's P6 (max-pool of P5, kernel 1, stride 2) is
torchvision's `LastLevelMaxPool` as is.
"""

from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock

__all__ = ["BackboneFPN", "P6P7FromInput"]


class P6P7FromInput(ExtraFPNBlock):
    """P6 = conv3x3/s2(C5), P7 = conv3x3/s2(P6): mmdet's RetinaNet extra levels (no ReLU before P7)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1)

    def forward(
        self, results: List[torch.Tensor], x: List[torch.Tensor], names: List[str]
    ) -> Tuple[List[torch.Tensor], List[str]]:
        p6 = self.p6(x[-1])  # from the backbone's last map, not from P5
        p7 = self.p7(p6)
        return results + [p6, p7], names + ["p6", "p7"]


class BackboneFPN(nn.Module):
    """`body` (a litvit dense backbone returning NCHW maps for its `out_indices`) followed by an FPN.

    `forward(x)` returns an ordered dict of pyramid levels ('0', '1', ... then the extra levels), the input
    torchvision's detection heads expect; `out_channels` is the pyramid's width (torchvision's contract for
    detector backbones).
    """

    def __init__(
        self,
        body: nn.Module,
        in_channels: Sequence[int],
        out_channels: int = 256,
        extra_blocks: Optional[ExtraFPNBlock] = None,
    ):
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(list(in_channels), out_channels, extra_blocks=extra_blocks)
        self.out_channels = out_channels
        init_like_mmdet(self.fpn)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        feats = self.body(x)  # list of (B, C_i, H / s_i, W / s_i)
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))


def init_like_mmdet(fpn: nn.Module) -> None:
    """mmdet / mmseg initialise every FPN conv xavier-uniform with zero bias (torchvision: kaiming-uniform a=1)."""
    for m in fpn.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


def stage_channels(body: nn.Module) -> List[int]:
    """Channels of the maps `body` returns (its `embed_dims` at its `out_indices`)."""
    return [body.embed_dims[i] for i in body.out_indices]
