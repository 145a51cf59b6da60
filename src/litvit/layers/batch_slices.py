"""Run a stage's blocks over a large batch a few images at a time, in CPU inference, where malloc would otherwise
page-fault its large maps in afresh at every call.

Why: glibc's malloc serves every block over 32 MiB (the ceiling of its dynamic mmap threshold) with a fresh mmap
and unmaps it on free, so every tensor that large is page-faulted in again at its first write, 4 KiB at a time. The
early stages of LIT and LITv2 are exactly where such tensors are made: LITv2-S's stage-1 FFN hidden map at batch 16
is 77 MB in fp32 (39 MB in bf16), written by fc1, then by the depthwise conv. On an AMX Xeon (KVM, 2 threads) the
fused depthwise conv + GELU over that map took 50 ms, over the same map in four slices of four images 20.5 ms; a
copy of a 39 MB map took 16.8 ms, of a 19 MB one 2.1 ms. Slices of <= 8 MiB: in the whole model, 14 MiB slices
still page-faulted (glibc also gives back a heap top that grows past twice its dynamic threshold), and small slices
stay in the last-level cache from one op of a block to the next.

Where the process keeps freed memory (`litvit.allocator.keep_freed_memory`, which every `litvit` command and
`litvit bench` call), blocks up to 1 GiB are reused from the heap and the batch stays whole up to that size: the
slices' only other effect, smaller GEMMs and a `cat` of their outputs, then costs. AMD EPYC (family 25 model 17,
2 threads, freed memory kept), LITv2-S whole against sliced in two runs: fp32 1.02-1.05x at batch 16, 1.10-1.12x at
64, 1.07x at 100; bf16 autocast 1.02x at 16, 1.08-1.10x at 64. With malloc's default the slices still pay there:
1.10-1.15x at 16, 1.25-1.30x at 64 (`benchmarks/batch_slices.py`).

In inference every block is per image (LayerNorm per token, BatchNorm and dropout in eval mode), so the sliced run
gives each image the same result (LITv2-S's logits at batch 16: unchanged to the last bit; the official fixtures,
one image per slice: classification within 1e-5, dense within 2e-5, as at batch 1, where oneDNN's offset conv
rounds differently from batch 2: tests/models/test_parity.py). Only eager CPU inference slices: autograd, tracing,
torch.compile / torch.export and TorchScript see the plain loop.
"""

from typing import Callable, Optional, Tuple

import torch
from torch import nn

from ..allocator import mmap_threshold
from .fused_cpu import inference_fast_path

__all__ = ["SLICE_BYTES", "images_per_slice", "run_in_slices", "widest_channels"]

SLICE_BYTES = 8 << 20  # the widest map of a slice stays at or under this: on the heap, and near the cache


def widest_channels(module: nn.Module) -> int:
    """The widest channel count a module's linears write (an FFN's hidden width, a qkv projection), 0 if none."""
    return max((m.out_features for m in module.modules() if isinstance(m, nn.Linear)), default=0)


def _compute_itemsize(x: torch.Tensor) -> int:
    """Bytes per element of the maps a block makes from x: bf16 / fp16 under CPU autocast, x's own otherwise."""
    if x.is_floating_point() and torch.is_autocast_enabled("cpu"):
        return torch.finfo(torch.get_autocast_dtype("cpu")).bits // 8
    return x.element_size()


def images_per_slice(x: torch.Tensor, channels: int) -> Optional[int]:
    """Images per slice for a (B, H, W, C) map whose blocks write maps `channels` wide; None where slicing does not pay.

    Slicing pays only where the whole-batch map would be mmapped (over `allocator.mmap_threshold()`: 32 MiB with
    malloc's default, 1 GiB where the process keeps freed memory); a slice then holds as many images as fit in
    `SLICE_BYTES` (at least one). A map under the threshold is already reused from the heap, and slicing it only
    shrinks the GEMMs (LITv2-S's stage-2 FFN in bf16, 19 MB: 23 ms whole, 28 ms in two slices).
    """
    batch = x.shape[0]
    if batch < 2:
        return None
    per_image = x.shape[1] * x.shape[2] * channels * _compute_itemsize(x)  # one image's widest map, in bytes
    if per_image == 0 or batch * per_image <= mmap_threshold():
        return None
    per_slice = max(1, SLICE_BYTES // per_image)
    return per_slice if per_slice < batch else None


def _hooked(module: nn.Module) -> bool:
    """Any forward hook on the module or inside it, or a global one: such hooks expect to see the whole batch."""
    if nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in module.modules())


@torch.jit.unused
def run_in_slices(
    module: nn.Module, fn: Callable[[torch.Tensor], Tuple[torch.Tensor, ...]], x: torch.Tensor, channels: int
) -> Optional[Tuple[torch.Tensor, ...]]:
    """fn(x) computed a few images at a time where that pays (eager CPU inference, a large map); None otherwise.

    `fn` runs `module`'s layers, returns a tuple of batch-first tensors and treats images independently; `channels`
    is the width of the widest map it writes. Each output is the concatenation of its slices, in batch order. A
    module with forward hooks inside (`litvit.viz.capture`, a user's) runs whole: its hooks see the batch they were
    given."""
    if torch.jit.is_tracing() or torch.compiler.is_compiling():  # first: torch 2.6's dynamo cannot trace next(it, d)
        return None
    weight = next(module.parameters(), None)
    if weight is None or not inference_fast_path(x, weight) or x.dim() != 4:
        return None
    per_slice = images_per_slice(x, channels)
    if per_slice is None or _hooked(module):
        return None
    parts = [fn(part) for part in x.split(per_slice)]
    return tuple(torch.cat(outs) for outs in zip(*parts))
