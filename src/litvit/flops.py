"""Operation counts: the official `flops()` formula, and a measured count through `torch.utils.flop_counter`.

Both are in multiply-accumulates (MACs), the unit the papers call FLOPs.

* `official_flops(model, img_size)` reproduces the official LIT / LITv2 `model.flops()` to the unit, quirks
  included (the offset conv counted with 12 output channels although it has 8, biases counted, the final-norm term
  taken as R0^2 / 16, softmax and pooling not counted). Each layer knows its own term (`layer.flops(H, W)`, as in
  the official code); this function only walks the pyramid and adds them up. LIT-Ti's code base has no `flops()`;
  use `count_macs`.
* `count_macs(model, input_size)` runs the model under `FlopCounterMode` and halves its FLOP total. Importing this
  module registers litvit's own formulas with the flop counter (`register_formulas`): for
  `torchvision::deform_conv2d`, which PyTorch does not count at all, and for every scaled-dot-product-attention
  kernel op of the running torch, because torch counts some of them (e.g. the CPU flash kernel of torch 2.14) as
  zero and covers a different set in every release. With litvit's formulas a count is the same on every torch.

This module imports nothing from `litvit.models` (the models import it): the walk below is duck-typed.
"""

import contextlib
import math
from typing import Any, Callable, List, Sequence, Union

import torch
import torchvision  # noqa: F401  (loads the torchvision:: ops, so that their formulas can be registered below)
from torch import nn
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula

from .options import to_2tuple

__all__ = ["official_flops", "count_macs", "register_formulas", "sdpa_flops", "sdpa_backward_flops"]


def official_flops(model: nn.Module, img_size: Union[int, Sequence[int], None] = None) -> int:
    """The official `flops()` of a LIT-S/M/B or LITv2 classifier at `img_size` (default: the model's own).

    For square sizes this is the official number exactly (LITv2-S at 224: 3,734,401,596); rectangular sizes
    generalise each R*R term to H*W. The sum is: patch embedding, every block at its stage's map size, every
    deformable token merge, the final-norm term and the head.
    """
    # Duck-typed (no import of litvit.models, which imports this module): a pyramid classifier has a stage-1
    # patch embedding, a `layers` list of stages and a head. LIT-Ti (patch_embed1..4, no `layers`) is refused here.
    if not all(hasattr(model, a) for a in ("patch_embed", "layers", "num_features", "num_classes")):
        raise TypeError(
            f"official_flops covers the LIT-S/M/B and LITv2 classifiers, got {type(model).__name__}; "
            "the official LIT-Ti code has no flops() formula: use litvit.flops.count_macs instead"
        )
    height, width = to_2tuple(img_size if img_size is not None else model.img_size)
    total = _module_flops(model.patch_embed, height, width)
    p = model.patch_embed.patch_size
    h, w = math.ceil(height / p), math.ceil(width / p)  # the stage-1 map (the image is padded to a multiple of p)
    h0, w0 = h, w
    for stage in model.layers:
        for block in stage.blocks:
            total += _module_flops(block, h, w)
        if not isinstance(stage.downsample, nn.Identity):
            total += _module_flops(stage.downsample, h, w)
            h, w = h // 2, w // 2
    total += model.num_features * h0 * w0 // 16  # final norm, as the official code counts it (R0^2 / 16 tokens)
    total += model.num_features * model.num_classes  # head (no bias term in the official count)
    return int(total)


def _module_flops(module: nn.Module, h: int, w: int) -> int:
    count = getattr(module, "flops", None)
    if count is None:
        raise TypeError(f"no official count for {type(module).__name__}: it has no flops(H, W) method")
    return int(count(h, w))


# ---------------------------------------------------------------------------------------------- flop formulas


def sdpa_flops(query_shape: Sequence[int], key_shape: Sequence[int], value_shape: Sequence[int]) -> int:
    """FLOPs of one attention forward: q @ k^T plus attn @ v, 2 * (B*h*N*M*d) each for d_qk == d_v.

    q (..., N, d), k (..., M, d), v (..., M, d_v); the leading dims are the query's (B, h), so grouped-query
    attention counts every query head, as torch's `sdpa_flop_count` does. Softmax and scaling are not counted.
    """
    n, d = query_shape[-2], query_shape[-1]
    m, dv = key_shape[-2], value_shape[-1]
    bh = math.prod(query_shape[:-2])
    return 2 * bh * n * m * d + 2 * bh * n * m * dv


def sdpa_backward_flops(query_shape: Sequence[int], key_shape: Sequence[int], value_shape: Sequence[int]) -> int:
    """FLOPs of one attention backward, torch's `sdpa_backward_flop_count` convention: the scores are recomputed
    (q k^T), then grad-scores (dO v^T), grad-v (P^T dO), grad-q (dS k) and grad-k (dS^T q)."""
    n, d = query_shape[-2], query_shape[-1]
    m, dv = key_shape[-2], value_shape[-1]
    bh = math.prod(query_shape[:-2])
    return 2 * bh * n * m * (3 * d + 2 * dv)


def _sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flops(query_shape, key_shape, value_shape)


def _sdpa_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flops(query_shape, key_shape, value_shape)


def _deform_conv2d_flop(input_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    """2 * (output elements) * (C_in / groups * kh * kw): the column GEMM of a deformable conv."""
    batch = input_shape[0]
    cout, cin_per_group, kh, kw = weight_shape
    return 2 * batch * cout * out_shape[2] * out_shape[3] * cin_per_group * kh * kw


def _deform_conv2d_backward_flop(grad_shape, input_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    """Gradients for the input (and offsets) and for the weight: twice the forward GEMM, as for a plain conv."""
    batch = input_shape[0]
    cout, cin_per_group, kh, kw = weight_shape
    return 4 * batch * cout * grad_shape[2] * grad_shape[3] * cin_per_group * kh * kw


def _fused_conv_flop(input_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    """2 * (output elements) * (C_in / groups * kh * kw), as for aten's convolution (the fused GELU is free)."""
    cout, cin_per_group, kh, kw = weight_shape
    return 2 * out_shape[0] * cout * out_shape[2] * out_shape[3] * cin_per_group * kh * kw


# The SDPA kernel ops (all take query, key, value first; the backward ops grad_out, query, key, value). Each is
# registered only where the running torch has it. `_scaled_dot_product_attention_math` is composite: with autograd
# it is decomposed into bmm's before the counter sees it, but on inference tensors it reaches the counter as one op.
_SDPA_FORWARD = (
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_attention_math",
    "_scaled_dot_product_attention_math_for_mps",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_fused_attention_overrideable",
)
_SDPA_BACKWARD = (
    "_scaled_dot_product_flash_attention_for_cpu_backward",
    "_scaled_dot_product_efficient_attention_backward",
    "_scaled_dot_product_flash_attention_backward",
    "_scaled_dot_product_cudnn_attention_backward",
    "_scaled_dot_product_fused_attention_overrideable_backward",
)


def _ops(namespace: Any, names: Sequence[str]) -> List[Any]:
    return [getattr(namespace, name) for name in names if hasattr(namespace, name)]


def _install(ops: Sequence[Any], formula: Callable[..., int]) -> None:
    """Make `formula` the counter's formula for each op, whether or not the op already has one.

    `register_flop_formula` raises "duplicate registrations" for an op that has a formula: torch's own (newer
    releases add formulas for more kernels), or litvit's from an earlier import (`importlib.reload`). Dropping the
    entry first makes this idempotent and lets litvit's convention win, so counts agree across torch versions.
    A FlopCounterMode copies the registry when it is created: counters created after this call see the formula.
    """
    registry = getattr(flop_counter, "flop_registry", {})
    for op in ops:
        registry.pop(op, None)
        with contextlib.suppress(RuntimeError):  # a registry this code cannot clear: keep the formula already there
            register_flop_formula(op)(formula)


def register_formulas() -> None:
    """Register litvit's flop formulas (idempotent; done on import): deform_conv2d, SDPA kernels, fused conv."""
    aten = torch.ops.aten
    _install(_ops(aten, _SDPA_FORWARD), _sdpa_flop)
    _install(_ops(aten, _SDPA_BACKWARD), _sdpa_backward_flop)
    torchvision_ops = torch.ops.torchvision
    _install(_ops(torchvision_ops, ["deform_conv2d"]), _deform_conv2d_flop)
    _install(_ops(torchvision_ops, ["_deform_conv2d_backward"]), _deform_conv2d_backward_flop)
    # the fused depthwise conv + GELU of DWConvMlp's inference path
    _install(_ops(torch.ops.mkldnn, ["_convolution_pointwise"]), _fused_conv_flop)


register_formulas()


def count_macs(
    model: nn.Module, input_size: Union[int, Sequence[int]] = 224, batch_size: int = 1, in_chans: int = 3
) -> int:
    """Measured multiply-accumulates of one forward pass of `model` on a (batch_size, in_chans, H, W) input."""
    h, w = to_2tuple(input_size, "input_size")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.randn(batch_size, in_chans, h, w, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2
