"""What the layer tests share: non-trivial weights, and HiLo's official forward written out (ARCHITECTURE.md §3)."""

import torch
import torch.nn.functional as F
from torch import nn

from litvit.layers import HiLo


def randomize(m: nn.Module, seed: int = 0, std: float = 0.3) -> nn.Module:
    """Non-trivial weights and biases everywhere (default initialisations can hide ordering bugs: zero biases, ones
    in norms). Returns `m` in the mode it was in."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return m


def hilo_reference(m: HiLo, x: torch.Tensor) -> torch.Tensor:
    """Official HiLo forward (dense version), written out with explicit matmul + softmax.

    x: (B, H, W, C) -> (B, H, W, C). Reads only the weights of `m` and its hyper-parameters.
    """
    B, H, W, C = x.shape
    s = m.window_size
    num_heads = m.num_heads
    head_dim = int(C / num_heads)
    scale = head_dim**-0.5
    l_heads = int(num_heads * m.alpha)
    h_heads = num_heads - l_heads
    if s == 1:
        h_heads, l_heads = 0, num_heads
    h_dim, l_dim = h_heads * head_dim, l_heads * head_dim

    pad_r = (s - W % s) % s
    pad_b = (s - H % s) % s
    x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    Hp, Wp = x.shape[1], x.shape[2]
    assert Hp % s == 0 and Wp % s == 0

    outs = []
    if h_heads > 0:
        h_group, w_group = Hp // s, Wp // s
        total_groups = h_group * w_group
        xw = x.view(B, h_group, s, w_group, s, C).transpose(2, 3)
        qkv = m.h_qkv(xw).reshape(B, total_groups, -1, 3, h_heads, head_dim).permute(3, 0, 1, 4, 2, 5)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, G, h, s*s, d)
        attn = (q @ k.transpose(-2, -1)) * scale
        attn = attn.softmax(dim=-1)
        o = (attn @ v).transpose(2, 3).reshape(B, h_group, w_group, s, s, h_dim)
        o = o.transpose(2, 3).reshape(B, h_group * s, w_group * s, h_dim)
        outs.append(m.h_proj(o)[:, :H, :W])
    if l_heads > 0:
        q = m.l_q(x).reshape(B, Hp * Wp, l_heads, head_dim).permute(0, 2, 1, 3)
        if s > 1:
            x_ = x.permute(0, 3, 1, 2)
            x_ = nn.AvgPool2d(kernel_size=s, stride=s)(x_).reshape(B, C, -1).permute(0, 2, 1)
        else:
            x_ = x.reshape(B, Hp * Wp, C)
        kv = m.l_kv(x_).reshape(B, -1, 2, l_heads, head_dim).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        attn = (q @ k.transpose(-2, -1)) * scale
        attn = attn.softmax(dim=-1)
        o = (attn @ v).transpose(1, 2).reshape(B, Hp, Wp, l_dim)
        outs.append(m.l_proj(o)[:, :H, :W])
    return torch.cat(outs, dim=-1)
