"""Boundary checks shared by the layers and models.

Every public layer validates its input here, once, before any arithmetic: a wrong shape or dtype is reported in one
line that names the argument, what was given and what is allowed, instead of surfacing as a stack trace from inside
a matmul. The tensor checks are registered as FX leaf functions so that `torch.fx` tracing (timm's feature
extraction) records a call instead of trying to trace the Python branches.
"""

from typing import List, Optional, Tuple

import torch
from timm.layers import register_notrace_function


def check_positive_int(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_heads(dim: int, num_heads: int, name: str = "dim") -> None:
    check_positive_int(name, dim)
    check_positive_int("num_heads", num_heads)
    if dim % num_heads != 0:
        raise ValueError(
            f"{name} ({dim}) must be divisible by num_heads ({num_heads}); choose num_heads among the divisors of {dim}"
        )


@register_notrace_function
def check_floating(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        fix = "torch.stack(...) for a list of images" if isinstance(x, (list, tuple)) else "torch.as_tensor(...)"
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}; convert it with {fix}")
    if not torch.is_floating_point(x):
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}; convert it with .float()")


_TENSOR_METHOD = {torch.float32: "float", torch.float64: "double", torch.float16: "half", torch.bfloat16: "bfloat16"}


@register_notrace_function
@torch.jit.unused
def check_dtype(x: torch.Tensor, weight: torch.Tensor, name: str) -> None:
    """`x` must be on the device of the weights it meets first, and have their dtype unless autocast will cast both.

    Without this a float64 or float16 image into an fp32 model fails deep in the conv with "Input type (double)
    and bias type (float) should be the same", which names neither the model nor the fix. Under autocast every
    floating type but float64 is cast to the autocast dtype, so those mismatches are fine there.
    Not scriptable (autocast state): callers skip it under TorchScript.
    """
    if x.device != weight.device:
        raise TypeError(
            f"{name} is on {x.device} but the model's weights are on {weight.device}: move the input with "
            f"x.to('{weight.device}'), or the model with model.to('{x.device}')"
        )
    if x.dtype == weight.dtype:
        return
    if torch.is_autocast_enabled(x.device.type) and torch.float64 not in (x.dtype, weight.dtype):
        return
    cast = _TENSOR_METHOD.get(weight.dtype)
    fix_input = f"x.{cast}()" if cast is not None else f"x.to({weight.dtype})"
    raise TypeError(
        f"{name} has dtype {x.dtype} but the model's weights are {weight.dtype}: convert the input with "
        f"{fix_input}, or the model with model.to({x.dtype})"
    )


@register_notrace_function
def check_map(x: torch.Tensor, dim: int, name: str) -> None:
    """`x` must be a (B, H, W, C) feature map with C == dim."""
    check_floating(x, name)
    if x.dim() != 4:
        raise ValueError(
            f"{name} must be a (B, H, W, C) feature map, got a {x.dim()}-D tensor of shape {list(x.shape)}"
        )
    if x.shape[-1] != dim:
        raise ValueError(f"{name} must have {dim} channels in its last dimension, got shape {list(x.shape)}")


@register_notrace_function
def tokens_to_map(x: torch.Tensor, dim: int, size: Optional[List[int]], name: str) -> Tuple[torch.Tensor, bool]:
    """Accept tokens (B, N, C) with size=(H, W), or a map (B, H, W, C); return the map and whether tokens came in."""
    check_floating(x, name)
    if x.dim() == 3:
        if size is None or len(size) != 2:
            raise ValueError(f"{name} is a (B, N, C) token tensor: pass its spatial size as size=(H, W)")
        if x.shape[-1] != dim:
            raise ValueError(f"{name} must have {dim} channels in its last dimension, got shape {list(x.shape)}")
        if size[0] * size[1] != x.shape[1]:
            raise ValueError(
                f"size=({size[0]}, {size[1]}) gives {size[0] * size[1]} tokens but {name} has N={x.shape[1]}; "
                "N must equal H * W"
            )
        return x.reshape(x.shape[0], size[0], size[1], dim), True
    check_map(x, dim, name)
    if size is not None and (size[0] != x.shape[1] or size[1] != x.shape[2]):
        raise ValueError(f"size=({size[0]}, {size[1]}) does not match the (B, H, W, C) map of shape {list(x.shape)}")
    return x, False


@register_notrace_function
def check_image(x: torch.Tensor, in_chans: int, min_size: int, name: str = "input") -> None:
    """`x` must be an image batch (B, in_chans, H, W) with both sides at least `min_size`."""
    check_floating(x, name)
    if x.dim() != 4:
        raise ValueError(
            f"{name} must be an image batch (B, {in_chans}, H, W), got a {x.dim()}-D tensor of shape {list(x.shape)}"
            + ("; add a batch dimension with x.unsqueeze(0)" if x.dim() == 3 else "")
        )
    if x.shape[1] != in_chans:
        hint = "; it looks channels-last: use x.permute(0, 3, 1, 2)" if x.shape[-1] == in_chans else ""
        raise ValueError(f"{name} must have {in_chans} channels (B, {in_chans}, H, W), got shape {list(x.shape)}{hint}")
    if x.shape[2] < min_size or x.shape[3] < min_size:
        raise ValueError(
            f"{name} of size {x.shape[2]}x{x.shape[3]} is too small for this network: both sides must be at least "
            f"{min_size} pixels; resize or pad the image"
        )
