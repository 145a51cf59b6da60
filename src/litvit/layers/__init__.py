"""Single-purpose layers; each works on its own, on channels-last maps (B, H, W, C) with explicit spatial size."""

from .attention import Attention, RelPosAttention, relative_position_index
from .block import Block, MLPBlock
from .dtm import DeformableTokenMerging, OffsetDeformConv2d
from .ffn import DWConv, DWConvMlp, Mlp
from .hilo import HiLo
from .patch_embed import PatchEmbed

__all__ = [
    "Attention",
    "Block",
    "DWConv",
    "DWConvMlp",
    "DeformableTokenMerging",
    "HiLo",
    "MLPBlock",
    "Mlp",
    "OffsetDeformConv2d",
    "PatchEmbed",
    "RelPosAttention",
    "relative_position_index",
]
