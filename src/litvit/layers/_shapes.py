"""Size arithmetic that stays correct when the sizes are symbolic (torch.export with dynamic height / width).

In eager mode a layer may branch on a size ("pad only if the side is not a multiple"), which saves a copy. Under
`torch.export` with dynamic shapes the same branch would be decided once, at trace time, and the exported graph
would then be right only at sizes that decide it the same way (the padding "baked in"). So where a size is a
`torch.SymInt` the layers take the branch-free path instead: pad amounts computed from the symbolic sizes (exported
as graph arithmetic feeding an ONNX `Pad`), resized tables built from the symbolic grid. Both paths give the same
numbers: padding by zero rows, or resizing a table to its own size, changes nothing.
"""

import torch
import torch.nn.functional as F


@torch.jit.unused
def is_symbolic(height: int, width: int) -> bool:
    """True when either size is symbolic (traced with dynamic shapes): a branch on it would be frozen at trace time."""
    return isinstance(height, torch.SymInt) or isinstance(width, torch.SymInt)


@torch.jit.unused
def is_tracing() -> bool:
    """Under torch.export / torch.compile: tensors are fake, so nothing may be cached for later eager calls."""
    return torch.compiler.is_compiling()


def pad_to_multiple(x: torch.Tensor, multiple: int, channels_last: bool) -> torch.Tensor:
    """Zero-pad the bottom and right of a (B, H, W, C) (`channels_last`) or (B, C, H, W) map so that H and W become
    multiples of `multiple`: (.., H, W, ..) -> (.., ceil(H / m) * m, ceil(W / m) * m, ..).

    The padded side is written `ceil(H / m) * m` (not `H + (-H) % m`) so that a tracer can see it is a multiple of m
    when a later reshape splits it into windows.
    """
    h_dim = 1 if channels_last else 2
    height, width = x.shape[h_dim], x.shape[h_dim + 1]
    pad_h = (height + multiple - 1) // multiple * multiple - height
    pad_w = (width + multiple - 1) // multiple * multiple - width
    symbolic = False if torch.jit.is_scripting() else is_symbolic(height, width)
    if symbolic or pad_h > 0 or pad_w > 0:
        pads = [0, pad_w, 0, pad_h]  # F.pad lists (left, right) pairs from the last dimension backwards
        x = F.pad(x, [0, 0] + pads if channels_last else pads)
    return x


def crop_map(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The top-left (B, height, width, C) of a padded (B, Hp, Wp, C) map (the inverse of `pad_to_multiple`).

    With symbolic sizes a slice `x[:, :H]` would be traced with the guard "H == Hp" or "H != Hp" (slicing to the full
    size returns the input itself), i.e. with the padding of the example input baked in; gathering the first H rows
    and W columns carries no such guard.
    """
    symbolic = False if torch.jit.is_scripting() else is_symbolic(height, width)
    if symbolic:
        rows = torch.arange(height, device=x.device)
        cols = torch.arange(width, device=x.device)
        return x.index_select(1, rows).index_select(2, cols)
    return x[:, :height, :width]
