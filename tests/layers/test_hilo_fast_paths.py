"""HiLo's fast paths compute the official function: matmul attention for small windows in eager inference,
attention written for the compiler in traced graphs, bf16 autocast."""

import pytest
import torch

from litvit.layers import HiLo

from .helpers import hilo_reference, randomize

TOL = 1e-5


def _count_sdpa(monkeypatch) -> list:
    import litvit.layers.hilo as hilo_module

    calls = []
    real = hilo_module.F.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(hilo_module.F, "scaled_dot_product_attention", counting)
    return calls


@pytest.mark.parametrize("s,grad,sdpa_calls", [(2, False, 0), (4, False, 0), (5, False, 1), (2, True, 1)])
def test_small_windows_use_matmul_attention_in_inference_only(monkeypatch, s, grad, sdpa_calls):
    """Windows of <= 16 tokens run matmul attention in eager CPU inference; training and larger windows keep SDPA;
    both compute the official function."""
    m = randomize(HiLo(16, 4, window_size=s, alpha=0.0)).eval()  # all Hi-Fi: every SDPA call is a window call
    x = torch.randn(2, 7, 9, 16)
    calls = _count_sdpa(monkeypatch)
    with torch.set_grad_enabled(grad):
        out = m(x)
    assert len(calls) == sdpa_calls
    with torch.no_grad():
        ref = hilo_reference(m, x)
    assert (out.detach() - ref).abs().max().item() <= TOL


def test_small_window_path_bf16_autocast_close_to_fp32():
    """Under CPU bf16 autocast the matmul path returns the autocast dtype and stays near fp32."""
    m = randomize(HiLo(32, 8, window_size=2, alpha=0.5)).eval()
    x = torch.randn(2, 6, 10, 32)
    with torch.no_grad():
        ref = m(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = m(x)
    assert out.shape == ref.shape and out.dtype == torch.bfloat16
    rel = ((out.float() - ref).abs().max() / ref.abs().max()).item()
    assert rel < 3e-2


@pytest.mark.parametrize(
    "s,alpha,sdpa_calls", [(2, 0.0, 0), (4, 0.0, 0), (5, 0.0, 1), (2, 0.5, 0), (5, 0.5, 1), (1, 0.5, 0)]
)
def test_attention_for_compiler_in_traced_graphs(monkeypatch, s, alpha, sdpa_calls):
    """With `_tracing(attention_for_compiler=True)` (the int8 export) a traced HiLo has no SDPA but for Hi-Fi
    windows of more than 16 tokens (tiny windows as broadcast sums, Lo-Fi as matmuls and a written-out softmax),
    and still computes the official function."""
    from litvit.export.program import _tracing

    m = randomize(HiLo(16, 4, window_size=s, alpha=alpha)).eval()
    x = torch.randn(2, 7, 9, 16)
    calls = _count_sdpa(monkeypatch)
    with torch.no_grad():
        ref = hilo_reference(m, x)
        with _tracing(m, attention_for_compiler=True):
            program = torch.export.export(m, (x,), strict=False)  # traced: no eager fast path
        assert "_for_compiler" not in m.__dict__ and not m._for_compiler()  # restored
        out = program.module()(x)
    assert len(calls) == sdpa_calls
    assert (out - ref).abs().max().item() <= TOL


def test_attention_for_compiler_compiled_matches_reference():
    """Compiled by inductor, the plain forms agree with the official function within fp32 rounding."""
    from litvit.export.program import _tracing

    m = randomize(HiLo(32, 8, window_size=2, alpha=0.5)).eval()
    x = torch.randn(3, 6, 10, 32)
    with torch.no_grad():
        ref = hilo_reference(m, x)
        with _tracing(m, attention_for_compiler=True):
            out = torch.compile(m, backend="inductor", dynamic=False)(x)
    assert (out - ref).abs().max().item() <= TOL
