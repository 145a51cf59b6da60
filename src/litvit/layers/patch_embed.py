"""Stage-1 patch embedding: a strided conv that turns an image into a (B, H, W, C) token map."""

import math
from typing import Callable, Optional

import torch
from timm.layers import register_notrace_module
from torch import nn

from ._checks import check_dtype, check_image, check_positive_int
from ._shapes import pad_to_multiple


@register_notrace_module
class PatchEmbed(nn.Module):
    """Non-overlapping `patch_size` conv, then an optional LayerNorm over channels.

    The image is zero-padded on the right and bottom to a multiple of `patch_size` (as the official detection and
    segmentation backbones do), so any input size works; at sizes that are already multiples this is exactly the
    official classifier's patch embedding. The output is channels-last, (B, H / p, W / p, C), the layout every later
    layer works in.
    """

    def __init__(
        self,
        patch_size: int = 4,
        in_chans: int = 3,
        embed_dim: int = 96,
        norm_layer: Optional[Callable[[int], nn.Module]] = nn.LayerNorm,
    ):
        super().__init__()
        self.patch_size = check_positive_int("patch_size", patch_size)
        self.in_chans = check_positive_int("in_chans", in_chans)
        self.embed_dim = check_positive_int("embed_dim", embed_dim)
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = norm_layer(embed_dim) if norm_layer is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) image -> (B, ceil(H / p), ceil(W / p), embed_dim) map."""
        check_image(x, self.in_chans, 1, "PatchEmbed input")
        if not torch.jit.is_scripting():  # the first weights of every model: a dtype mismatch is reported here
            check_dtype(x, self.proj.weight, "PatchEmbed input")
        x = pad_to_multiple(x, self.patch_size, channels_last=False)  # (B, C, H, W) -> (B, C, ceil(H/p)*p, ..)
        # A channels_last image makes the conv write a physically (B, H, W, C) map: the permute below is then free
        # and the residual stream of stage 1 is contiguous.
        x = self.proj(x.contiguous(memory_format=torch.channels_last))
        x = x.permute(0, 2, 3, 1)  # (B, C, H, W) channels_last -> (B, H, W, C) contiguous
        return self.norm(x)

    def flops(self, H: int, W: int) -> int:
        """MACs for an H x W *image* (padded to a multiple of p), official rule: the conv's p*p*C_in MACs per
        output element (its bias, unlike the other convs', not counted), plus C per token for the norm."""
        p = self.patch_size
        h, w = math.ceil(H / p), math.ceil(W / p)
        conv = h * w * self.embed_dim * self.in_chans * p * p
        norm = 0 if isinstance(self.norm, nn.Identity) else self.embed_dim * h * w
        return conv + norm
