"""The attention designs `litvit bench --attention` compares, each a module from a (B, H, W, C) map to a map of the
same shape (adapters reshape to each design's own layout; the reshapes are views and are timed with the layer, as
they would run inside a network):

* ``hilo``: litvit's HiLo (window s, Lo-Fi share alpha; LITv2 defaults s=2, alpha=0.9).
* ``hilo_matmul``: HiLo written the way the official code does (`HiLoMatmul`, from spec/ARCHITECTURE.md §3):
  explicit ``q @ k^T * scale``, softmax, ``@ v``; Hi-Fi windows by view/transpose; Lo-Fi AvgPool2d on an NCHW
  permute. Its weights are copied from the ``hilo`` layer, so both compute the same function (tests check 1e-5).
* ``mhsa``: timm's ViT multi-head self-attention (``timm.models.vision_transformer.Attention``, fused SDPA),
  global over all H*W tokens, qkv bias on.
* ``pvt_sra``: timm's PVTv2 spatial-reduction attention (``timm.models.pvt_v2.Attention``): keys/values from a
  stride-``sr`` conv + LayerNorm. ``sr`` follows the PVTv2 stages, which keep the key/value grid at 7x7 at 224
  (stages at 56/28/14/7 tokens use sr 8/4/2/1): ``sr = max(1, round(min(H, W) / 7))`` (`pvt_sr_ratio`).
* ``swin_window``: timm's Swin window attention (``timm.models.swin_transformer.WindowAttention``, window 7, with
  relative position bias) between timm's ``window_partition`` / ``window_reverse``, the map zero-padded to a
  multiple of 7 and cropped back as timm's SwinTransformerBlock does; the non-shifted block (no roll, no mask).
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BenchError
from .config import LAYERS

SWIN_WINDOW = 7


class HiLoMatmul(nn.Module):
    """HiLo as the official code writes it (spec/ARCHITECTURE.md §3), for the layer benchmark's baseline.

    Same constructor and parameter names as `litvit.layers.HiLo` (l_q, l_kv, l_proj, h_qkv, h_proj), so
    ``HiLoMatmul.from_hilo(hilo)`` copies the weights with a strict `load_state_dict`. Input and output are
    (B, H, W, C) maps of any H, W (zero-padded on the right/bottom to a multiple of the window, then cropped, as the
    official dense backbones do).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        window_size: int = 2,
        alpha: float = 0.5,
        qkv_bias: bool = True,
        qk_scale: Optional[float] = None,
    ):
        super().__init__()
        head_dim = int(dim / num_heads)
        self.dim = dim
        self.ws = window_size
        self.scale = qk_scale or head_dim**-0.5
        self.l_heads = int(num_heads * alpha)
        self.h_heads = num_heads - self.l_heads
        if window_size == 1:
            self.h_heads, self.l_heads = 0, num_heads
        self.l_dim = self.l_heads * head_dim
        self.h_dim = self.h_heads * head_dim
        if self.l_heads > 0:
            self.sr = nn.AvgPool2d(kernel_size=window_size, stride=window_size) if window_size != 1 else None
            self.l_q = nn.Linear(dim, self.l_dim, bias=qkv_bias)
            self.l_kv = nn.Linear(dim, self.l_dim * 2, bias=qkv_bias)
            self.l_proj = nn.Linear(self.l_dim, self.l_dim)
        if self.h_heads > 0:
            self.h_qkv = nn.Linear(dim, self.h_dim * 3, bias=qkv_bias)
            self.h_proj = nn.Linear(self.h_dim, self.h_dim)

    @classmethod
    def from_hilo(cls, hilo: nn.Module) -> "HiLoMatmul":
        """A baseline with the hyper-parameters and a copy of the weights of a `litvit.layers.HiLo`."""
        ref = cls(hilo.dim, hilo.num_heads, hilo.window_size, hilo.alpha, qk_scale=hilo.scale)
        ref.load_state_dict(hilo.state_dict(), strict=True)
        param = next(hilo.parameters(), None)
        if param is not None:
            ref = ref.to(device=param.device, dtype=param.dtype)
        return ref.train(hilo.training)

    def hifi(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        h_group, w_group = H // self.ws, W // self.ws
        total_groups = h_group * w_group
        x = x.reshape(B, h_group, self.ws, w_group, self.ws, C).transpose(2, 3)
        qkv = (
            self.h_qkv(x)
            .reshape(B, total_groups, -1, 3, self.h_heads, self.h_dim // self.h_heads)
            .permute(3, 0, 1, 4, 2, 5)
        )
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, groups, heads, ws*ws, head_dim)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        attn = (attn @ v).transpose(2, 3).reshape(B, h_group, w_group, self.ws, self.ws, self.h_dim)
        x = attn.transpose(2, 3).reshape(B, h_group * self.ws, w_group * self.ws, self.h_dim)
        return self.h_proj(x)

    def lofi(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        q = self.l_q(x).reshape(B, H * W, self.l_heads, self.l_dim // self.l_heads).permute(0, 2, 1, 3)
        if self.ws > 1:
            x_ = x.permute(0, 3, 1, 2)
            x_ = self.sr(x_).reshape(B, C, -1).permute(0, 2, 1)
            kv = self.l_kv(x_).reshape(B, -1, 2, self.l_heads, self.l_dim // self.l_heads).permute(2, 0, 3, 1, 4)
        else:
            kv = self.l_kv(x).reshape(B, -1, 2, self.l_heads, self.l_dim // self.l_heads).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, H, W, self.l_dim)
        return self.l_proj(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        pad_r = (self.ws - W % self.ws) % self.ws
        pad_b = (self.ws - H % self.ws) % self.ws
        if pad_r > 0 or pad_b > 0:
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        if self.h_heads == 0:
            return self.lofi(x)[:, :H, :W].contiguous()
        if self.l_heads == 0:
            return self.hifi(x)[:, :H, :W].contiguous()
        hifi_out = self.hifi(x)[:, :H, :W]
        lofi_out = self.lofi(x)[:, :H, :W]
        return torch.cat((hifi_out, lofi_out), dim=-1)


class TimmMHSA(nn.Module):
    """timm ViT attention (fused SDPA) over all H*W tokens of a (B, H, W, C) map."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        from timm.models.vision_transformer import Attention

        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        return self.attn(x.reshape(B, H * W, C)).reshape(B, H, W, C)


def pvt_sr_ratio(height: int, width: int) -> int:
    """PVTv2's spatial reduction for a stage at this token grid: keys/values pooled to about 7x7 (sr 8/4/2/1 at
    56/28/14/7 tokens, as in every PVTv2 model at 224)."""
    return max(1, round(min(height, width) / 7))


class TimmPvtSRA(nn.Module):
    """timm PVTv2 spatial-reduction attention (conv sr x sr stride sr + LayerNorm on keys/values)."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int):
        super().__init__()
        from timm.models.pvt_v2 import Attention

        self.sr_ratio = sr_ratio
        self.attn = Attention(dim, num_heads=num_heads, sr_ratio=sr_ratio, qkv_bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        return self.attn(x.reshape(B, H * W, C), [H, W]).reshape(B, H, W, C)


class TimmSwinWindow(nn.Module):
    """timm Swin window attention (window 7, relative position bias) with timm's partition / reverse around it."""

    def __init__(self, dim: int, num_heads: int, window_size: int = SWIN_WINDOW):
        super().__init__()
        from timm.models.swin_transformer import WindowAttention

        self.window_size = window_size
        self.attn = WindowAttention(dim, num_heads=num_heads, window_size=window_size, qkv_bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from timm.models.swin_transformer import window_partition, window_reverse

        B, H, W, C = x.shape
        ws = self.window_size
        pad_h, pad_w = (ws - H % ws) % ws, (ws - W % ws) % ws
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        Hp, Wp = H + pad_h, W + pad_w
        windows = window_partition(x, (ws, ws)).view(-1, ws * ws, C)
        out = self.attn(windows).view(-1, ws, ws, C)
        out = window_reverse(out, (ws, ws), Hp, Wp)
        return out[:, :H, :W, :].contiguous()


def build_layer(
    name: str, dim: int, heads: int, size: Tuple[int, int], window: int = 2, alpha: float = 0.9
) -> nn.Module:
    """The layer `name` for a (B, H, W, dim) input, seeded (0); HiLo and its matmul baseline share weights."""
    from ..layers import HiLo

    torch.manual_seed(0)
    if name in ("hilo", "hilo_matmul"):
        hilo = HiLo(dim, num_heads=heads, window_size=window, alpha=alpha)
        return hilo if name == "hilo" else HiLoMatmul.from_hilo(hilo)
    if name == "mhsa":
        return TimmMHSA(dim, heads)
    if name == "pvt_sra":
        return TimmPvtSRA(dim, heads, pvt_sr_ratio(*size))
    if name == "swin_window":
        return TimmSwinWindow(dim, heads)
    raise BenchError(f"unknown attention layer {name!r}: choose among {', '.join(LAYERS)}")
