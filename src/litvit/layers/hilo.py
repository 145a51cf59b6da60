"""HiLo attention (LITv2): high-frequency heads attend inside s x s windows, low-frequency heads attend from every
token to an s x s average-pooled map.

Shapes: the layer works on a channels-last map (B, H, W, C); token input (B, N, C) with an explicit size=(H, W) is
accepted too. H and W are arbitrary: the map is zero-padded on the right/bottom to a multiple of s and the result is
cropped back, exactly as the official dense backbones do (padded tokens are plain zeros, no mask), so the official
classifier (sizes already multiples of s) and the official backbones are the same layer here.
"""

import math
from typing import List, Optional

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_module
from torch import nn

from ._checks import check_heads, check_positive_int, tokens_to_map
from ._shapes import crop_map, pad_to_multiple
from .fused_cpu import Linear, inference_fast_path

# Hi-Fi windows of at most this many tokens (s <= 4) use plain matmul attention in eager CPU inference.
SMALL_WINDOW_TOKENS = 16


def _softmax(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dimension, written out: `Tensor.softmax` reaches an exported graph as a "safe"
    softmax (a test for rows of -inf) whose fused inductor loop was ~4x slower on 4-key rows."""
    x = (x - x.amax(dim=-1, keepdim=True)).exp()
    return x / x.sum(dim=-1, keepdim=True)


@register_notrace_module
class HiLo(nn.Module):
    """HiLo attention.

    Args:
        dim: channels C of the input and output.
        num_heads: total heads; head_dim = dim // num_heads for both branches.
        window_size: s >= 1. Hi-Fi window side and Lo-Fi pooling size; s == 1 turns every head into a Lo-Fi head,
            i.e. plain global attention with separate q and kv projections (stage 4 of every LITv2).
        alpha: fraction of heads given to Lo-Fi, in [0, 1]; Lo-Fi gets `int(num_heads * alpha)` heads (truncated,
            as the official code does), Hi-Fi the rest. alpha 0 / 1 build no Lo-Fi / Hi-Fi projections at all.
        qkv_bias: bias in the q, kv and qkv projections.
        qk_scale: overrides the softmax scale head_dim ** -0.5.

    The two branches have separate output projections and their outputs are concatenated, Hi-Fi channels first;
    there is no joint projection (the official parameter layout).
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
        check_heads(dim, num_heads)
        check_positive_int("window_size", window_size)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be a number in [0, 1] (the Lo-Fi share of heads), got {alpha!r}")
        self.dim = dim
        self.num_heads = num_heads
        self.window_size = window_size
        self.alpha = float(alpha)
        self.head_dim = dim // num_heads
        self.scale = float(qk_scale) if qk_scale else self.head_dim**-0.5

        l_heads = int(num_heads * alpha)
        if window_size == 1:  # no windows to attend in: every head is global (Lo-Fi)
            l_heads = num_heads
        self.l_heads = l_heads
        self.h_heads = num_heads - l_heads
        self.l_dim = self.l_heads * self.head_dim
        self.h_dim = self.h_heads * self.head_dim

        # Registration order is the official state_dict order: l_q, l_kv, l_proj, h_qkv, h_proj. A branch without
        # heads has no projections at all (None, which TorchScript prunes), as in the official checkpoints.
        self.l_q = None
        self.l_kv = None
        self.l_proj = None
        self.h_qkv = None
        self.h_proj = None
        if self.l_heads > 0:
            self.l_q = Linear(dim, self.l_dim, bias=qkv_bias)
            self.l_kv = Linear(dim, 2 * self.l_dim, bias=qkv_bias)
            self.l_proj = Linear(self.l_dim, self.l_dim)
        if self.h_heads > 0:
            self.h_qkv = Linear(dim, 3 * self.h_dim, bias=qkv_bias)
            self.h_proj = Linear(self.h_dim, self.h_dim)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, window_size={self.window_size}, lofi_heads={self.l_heads}, hifi_heads={self.h_heads}, "
            f"head_dim={self.head_dim}"
        )

    def _hifi(self, x: torch.Tensor) -> torch.Tensor:
        """Attention inside each s x s window of the padded map (B, Hp, Wp, C) -> (B, Hp, Wp, h_dim)."""
        B, Hp, Wp, _ = x.shape
        s, h, d = self.window_size, self.h_heads, self.head_dim
        gh, gw = Hp // s, Wp // s
        # The projection is per token, so it runs on the whole map before windowing (one GEMM on contiguous memory).
        assert self.h_qkv is not None and self.h_proj is not None
        qkv = self.h_qkv(x).reshape(B, gh, s, gw, s, 3, h, d)
        # (B, gh, s, gw, s, 3, h, d) -> (3, B, gh, gw, h, s, s, d) -> (3, B * windows, h, s * s, d)
        qkv = qkv.permute(5, 0, 1, 3, 6, 2, 4, 7).reshape(3, B * gh * gw, h, s * s, d)
        q, k, v = qkv.unbind(0)
        if not torch.jit.is_scripting() and self._small_windows(q):
            o = self._matmul_attention(q, k, v)
        elif not torch.jit.is_scripting() and self._sum_windows(q):
            o = self._summed_attention(q, k, v)
        else:
            o = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        # (B * windows, h, s * s, d) -> (B, gh, s, gw, s, h, d) -> (B, Hp, Wp, h_dim)
        o = o.reshape(B, gh, gw, h, s, s, d).permute(0, 1, 4, 2, 5, 3, 6).reshape(B, Hp, Wp, self.h_dim)
        return self.h_proj(o)

    @torch.jit.unused
    def _small_windows(self, q: torch.Tensor) -> bool:
        """Eager CPU inference on windows of <= SMALL_WINDOW_TOKENS tokens, where `_matmul_attention` is faster."""
        assert self.h_qkv is not None
        return q.shape[-2] <= SMALL_WINDOW_TOKENS and inference_fast_path(q, self.h_qkv.weight)

    @torch.jit.unused
    def _matmul_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """softmax(q k^T * scale) v as the official code writes it, for tiny windows (2x2 in every LITv2).

        Why: CPU flash attention tiles for long sequences; on millions of 4-token windows its per-window overhead
        dominates. LITv2-S stage-3 Hi-Fi (784 windows x 2 heads, batch 16), an AMX Xeon: SDPA 1.25 ms fp32 / 3.4 ms
        bf16, this 0.86 / 1.6 ms; at 56x56 (dense inputs) 23.7 / 43.5 vs 14.8 / 14.0 ms. Inference only: SDPA's
        backward is 2-4x faster than autograd through these three ops, and traced graphs keep SDPA.
        """
        attn = (q @ k.transpose(-2, -1)) * self.scale  # (windows, h, s*s, s*s)
        return attn.softmax(dim=-1) @ v

    @torch.jit.unused
    def _sum_windows(self, q: torch.Tensor) -> bool:
        """A traced graph for inductor (`_for_compiler`) on windows of <= SMALL_WINDOW_TOKENS tokens."""
        return self._for_compiler() and q.shape[-2] <= SMALL_WINDOW_TOKENS

    @torch.jit.unused
    def _for_compiler(self) -> bool:
        """Whether a traced graph writes the attention for inductor (`_summed_attention`, `_written_out_attention`)
        instead of SDPA: off, unless the int8 export asks for it (`export.program._tracing(attention_for_compiler=
        True)`)."""
        return False

    @torch.jit.unused
    def _summed_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """softmax(q k^T * scale) v over tiny windows, both products as broadcast multiplies and sums.

        Why: inductor turns the matmul form back into SDPA, whose per-window overhead dominates on 4-token
        windows; written as sums, the window attention fuses into the loops around it. LITv2-S stage-3 Hi-Fi (784
        windows x 2 heads, batch 16) compiled, 2 threads, AMD EPYC (AVX512-BF16): SDPA 1.67 ms fp32 / 2.78 ms bf16,
        this 0.24 / 0.38 ms; within 1e-6 of SDPA in fp32.
        """
        # (windows, h, t, 1, d) * (windows, h, 1, t, d) -> sum over d -> (windows, h, t, t): the scores
        attn = _softmax((q.unsqueeze(-2) * k.unsqueeze(-3)).sum(-1) * self.scale)
        # (windows, h, t, t, 1) * (windows, h, 1, t, d) -> sum over the keys -> (windows, h, t, d)
        return (attn.unsqueeze(-1) * v.unsqueeze(-3)).sum(-2)

    @torch.jit.unused
    def _written_out_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """softmax(q k^T * scale) v as two batched matmuls and the softmax written out (`_softmax`).

        Why: inductor matches `softmax` between two matmuls back to SDPA; written out, the products stay batched
        GEMMs and the softmax one fused loop. LITv2-S's Lo-Fi (196 queries x 49 pooled keys, 10 heads) and stage-4
        attention in the compiled int8+bf16 graph, batch 16, 2 threads, AMD EPYC (AVX512-BF16): 285-297 ms per step
        against 310-315 with SDPA (at batch 1, 35-37 against 31-34 ms: the int8 runtime is the throughput one).
        """
        return _softmax((q @ k.transpose(-2, -1)) * self.scale) @ v  # (B, h, N, M) scores -> (B, h, N, d)

    def _lofi(self, x: torch.Tensor) -> torch.Tensor:
        """Every token attends to the s x s average-pooled map: (B, Hp, Wp, C) -> (B, Hp, Wp, l_dim)."""
        B, Hp, Wp, C = x.shape
        s, h, d = self.window_size, self.l_heads, self.head_dim
        assert self.l_q is not None and self.l_kv is not None and self.l_proj is not None
        q = self.l_q(x).reshape(B, Hp * Wp, h, d).transpose(1, 2)  # (B, N, h, d) -> (B, h, N, d)
        if s > 1:
            # s x s average pool on the channels-last view: (B, Hp, Wp, C) -> (B, Hp / s, Wp / s, C), contiguous.
            # (A reshape-mean over the strided window axes computes the same and is 15-25x slower on CPU.)
            x = F.avg_pool2d(x.permute(0, 3, 1, 2), s).permute(0, 2, 3, 1)
        m = x.shape[1] * x.shape[2]  # pooled tokens; explicit, as -1 is ambiguous for an empty batch
        kv = self.l_kv(x).reshape(B, m, 2, h, d).permute(2, 0, 3, 1, 4)  # (B, M, 2, h, d) -> (2, B, h, M, d)
        k, v = kv.unbind(0)
        if not torch.jit.is_scripting() and self._for_compiler():
            o = self._written_out_attention(q, k, v)
        else:
            o = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        o = o.transpose(1, 2).reshape(B, Hp, Wp, self.l_dim)  # (B, h, N, d) -> (B, Hp, Wp, l_dim)
        return self.l_proj(o)

    def forward(self, x: torch.Tensor, size: Optional[List[int]] = None) -> torch.Tensor:
        """x: (B, H, W, C) map, or (B, N, C) tokens with size=(H, W). Returns the same layout as the input."""
        x, from_tokens = tokens_to_map(x, self.dim, size, "HiLo input")
        B, H, W, C = x.shape
        x = pad_to_multiple(x, self.window_size, channels_last=True)  # zeros on the right / bottom of (B, H, W, C)

        if self.h_qkv is None:
            out = crop_map(self._lofi(x), H, W)
        elif self.l_q is None:
            out = crop_map(self._hifi(x), H, W)
        else:
            out = torch.cat([crop_map(self._hifi(x), H, W), crop_map(self._lofi(x), H, W)], dim=-1)  # Hi-Fi first
        if from_tokens:
            out = out.reshape(B, H * W, C)
        return out

    def flops(self, H: int, W: Optional[int] = None) -> int:
        """Multiply-accumulates as counted by the official `HiLo.flops` (generalised from square to H x W maps).

        Counts the projections and the two attention products on the padded map; softmax and pooling are not
        counted. Equals the official number for square maps.
        """
        W = H if W is None else W
        s = self.window_size
        Hp, Wp = s * math.ceil(H / s), s * math.ceil(W / s)
        Np = Hp * Wp
        kv = (Hp // s) * (Wp // s)
        hifi = Np * self.dim * self.h_dim * 3 + (Np // (s * s)) * (s * s) ** 2 * self.h_dim * 2 + Np * self.h_dim**2
        lofi = Np * self.dim * self.l_dim + kv * self.dim * self.l_dim * 2 + Np * self.l_dim * kv * 2
        lofi += Np * self.l_dim**2
        return hifi + lofi
