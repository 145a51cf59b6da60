"""Operation counts: the official `flops()` formula, and a measured count through `torch.utils.flop_counter`.

Both are in multiply-accumulates (MACs), the unit the papers call FLOPs.

* `official_flops(model, img_size)` reproduces the official LIT / LITv2 `model.flops()` to the unit, quirks
  included (the offset conv counted with 12 output channels although it has 8, biases counted, the final-norm term
  taken as R0^2 / 16, softmax and pooling not counted). LIT-Ti's code base has no `flops()`; use `count_macs`.
* `count_macs(model, input_size)` runs the model under `FlopCounterMode` and halves its FLOP total. PyTorch counts no
  cost for `torchvision::deform_conv2d` by default; importing this module registers a formula for it (the GEMM over
  the sampled columns, as for a plain conv; the bilinear sampling itself is not counted).
"""

import math
from typing import Sequence, Tuple, Union

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula

from .layers.attention import RelPosAttention
from .layers.block import Block
from .layers.ffn import DWConvMlp
from .layers.hilo import HiLo

__all__ = ["official_flops", "count_macs"]


def _size(img_size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(img_size, int):
        return img_size, img_size
    h, w = img_size
    return int(h), int(w)


def _official_conv(k: int, cin: int, cout: int, stride: int, pad: int, h: int, w: int, groups: int = 1) -> int:
    """The official conv count: k*k*cin*(cout/groups) MACs plus one bias add per output element."""
    oh = (h + 2 * pad - (k - 1) - 1) // stride + 1
    ow = (w + 2 * pad - (k - 1) - 1) // stride + 1
    return k * k * cin * (cout // groups) * oh * ow + cout * oh * ow


def official_flops(model: nn.Module, img_size: Union[int, Sequence[int], None] = None) -> int:
    """The official `flops()` of a LIT-S/M/B or LITv2 classifier at `img_size` (default: the model's own).

    For square sizes this is the official number exactly (LITv2-S at 224: 3,734,401,596); rectangular sizes
    generalise each R*R term to H*W.
    """
    from .models._pyramid import PyramidClassifier

    if not isinstance(model, PyramidClassifier):
        raise TypeError(
            f"official_flops covers the LIT-S/M/B and LITv2 classifiers, got {type(model).__name__}; "
            "the official LIT-Ti code has no flops() formula: use litvit.flops.count_macs instead"
        )
    height, width = _size(img_size if img_size is not None else model.img_size)
    p, embed_dim = model.patch_size, model.embed_dims[0]
    h, w = math.ceil(height / p), math.ceil(width / p)
    h0, w0 = h, w
    total = h * w * embed_dim * model.in_chans * p * p + h * w * embed_dim  # patch conv + its norm
    for stage in model.layers:
        for block in stage.blocks:
            dim = block.norm2.normalized_shape[0]
            hidden = block.mlp.fc1.out_features
            total += 2 * h * w * dim * hidden + dim * h * w  # fc1 + fc2, norm2
            if isinstance(block.mlp, DWConvMlp):
                total += _official_conv(3, hidden, hidden, 1, 1, h, w, groups=hidden)
            if isinstance(block, Block):
                total += dim * h * w  # norm1
                attn = block.attn
                if isinstance(attn, HiLo):
                    total += attn.flops(h, w)
                elif isinstance(attn, RelPosAttention):
                    n, heads = h * w, attn.num_heads
                    total += n * dim * 3 * dim + 2 * heads * n * (dim // heads) * n + n * dim * dim
                else:
                    raise TypeError(f"no official count for attention {type(attn).__name__}")
        dtm = stage.downsample
        if not isinstance(dtm, nn.Identity):
            cin, cout = dtm.in_dim, dtm.out_dim
            total += _official_conv(2, cin, 12, 2, 0, h, w)  # the offset conv, counted with 12 channels
            total += _official_conv(2, cin, cout, 2, 0, h, w)
            total += (h // 2) * (w // 2) * cout  # BatchNorm
            h, w = h // 2, w // 2
    total += model.num_features * h0 * w0 // 16  # final norm, as the official code counts it
    total += model.num_features * model.num_classes  # head
    return int(total)


@register_flop_formula(torch.ops.torchvision.deform_conv2d)
def _deform_conv2d_flop(input_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    """2 * (output elements) * (C_in / groups * kh * kw): the column GEMM of a deformable conv."""
    batch = input_shape[0]
    cout, cin_per_group, kh, kw = weight_shape
    return 2 * batch * cout * out_shape[2] * out_shape[3] * cin_per_group * kh * kw


@register_flop_formula(torch.ops.torchvision._deform_conv2d_backward)
def _deform_conv2d_backward_flop(grad_shape, input_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    """Gradients for the input (and offsets) and for the weight: twice the forward GEMM, as for a plain conv."""
    batch = input_shape[0]
    cout, cin_per_group, kh, kw = weight_shape
    return 4 * batch * cout * grad_shape[2] * grad_shape[3] * cin_per_group * kh * kw


if hasattr(torch.ops.mkldnn, "_convolution_pointwise"):  # the fused conv + GELU of DWConvMlp's inference path

    @register_flop_formula(torch.ops.mkldnn._convolution_pointwise)
    def _fused_conv_flop(input_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
        """2 * (output elements) * (C_in / groups * kh * kw), as for aten's convolution (the fused GELU is free)."""
        cout, cin_per_group, kh, kw = weight_shape
        return 2 * out_shape[0] * cout * out_shape[2] * out_shape[3] * cin_per_group * kh * kw


def count_macs(
    model: nn.Module, input_size: Union[int, Sequence[int]] = 224, batch_size: int = 1, in_chans: int = 3
) -> int:
    """Measured multiply-accumulates of one forward pass of `model` on a (batch_size, in_chans, H, W) input."""
    h, w = _size(input_size)
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
