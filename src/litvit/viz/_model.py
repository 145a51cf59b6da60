"""What the viz tools need to know about a LIT / LIT-Ti / LITv2 model: where its token merges and attention layers
are, which stage each belongs to and how many input pixels a token of that stage spans. Read from module types and
names, so the tools work on any of the three families (and their reduced test configurations) alike."""

import contextlib
import re
from typing import Iterator, List, Tuple

import torch
from torch import nn

from ..errors import ConfigError
from ..layers.attention import Attention, RelPosAttention
from ..layers.dtm import DeformableTokenMerging
from ..layers.hilo import HiLo
from ..layers.patch_embed import PatchEmbed

ATTENTION_TYPES = (HiLo, RelPosAttention, Attention)


def patch_stride(model: nn.Module) -> int:
    """Pixels per stage-1 token side: the stride of the model's first patch embedding."""
    for module in model.modules():
        if isinstance(module, PatchEmbed):
            return module.patch_size
    raise ConfigError(f"{type(model).__name__} has no litvit patch embedding: pass a LIT, LIT-Ti or LITv2 model")


def dtm_modules(model: nn.Module) -> List[Tuple[str, DeformableTokenMerging]]:
    """The deformable token merges in the order the forward applies them (registration order in every family)."""
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, DeformableTokenMerging)]
    if not found:
        raise ConfigError(f"{type(model).__name__} has no deformable token merging: pass a LIT, LIT-Ti or LITv2 model")
    return found


def stage_of(name: str) -> int:
    """Stage index (0-based) of a module from its name: `layers.i...` (LIT-S/M/B, LITv2), `block{i+1}...` (LIT-Ti)."""
    match = re.match(r"^layers\.(\d+)\.", name)
    if match:
        return int(match.group(1))
    match = re.match(r"^block(\d+)\.", name)
    if match:
        return int(match.group(1)) - 1
    raise ConfigError(f"cannot tell the stage of {name!r}: pass a LIT, LIT-Ti or LITv2 classifier")


def attention_modules(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """Every attention layer (HiLo, relative-position MSA, plain MSA) with its module name, in forward order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, ATTENTION_TYPES)]


def model_input(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`x` on the model's device and in its dtype (an image from `load_image` is fp32 on the CPU)."""
    param = next(model.parameters())
    if x.dim() == 3:
        x = x.unsqueeze(0)
    return x.to(device=param.device, dtype=param.dtype)


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """The model in eval mode (BatchNorm of the token merges on running statistics) for the block, then restored."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
