"""The oneDNN fast paths of CPU inference (`litvit.layers.fused_cpu`) compute what the plain ops compute, and are
taken only where they may be: eager CPU inference, in fp32, or in bf16 on a CPU that runs bf16 natively."""

import pytest
import torch
from torch import nn
from torch.profiler import profile

from litvit.layers import DWConvMlp, HiLo
from litvit.layers.fused_cpu import HAS_FUSED_CONV, HAS_FUSED_LINEAR, ONEDNN_BF16, Linear

needs_bf16 = pytest.mark.skipif(
    not (ONEDNN_BF16 and HAS_FUSED_LINEAR and HAS_FUSED_CONV), reason="this CPU / build has no oneDNN bf16 kernels"
)


def _ops(fn):
    with profile() as prof:
        out = fn()
    return out, {e.key for e in prof.key_averages()}


def _linear_pair(bias: bool = True):
    torch.manual_seed(0)
    fast = Linear(24, 40, bias=bias)
    plain = nn.Linear(24, 40, bias=bias)
    plain.load_state_dict(fast.state_dict())
    return fast, plain


def test_linear_is_a_drop_in_nn_linear():
    fast, plain = _linear_pair()
    assert isinstance(fast, nn.Linear) and fast.state_dict().keys() == plain.state_dict().keys()
    x = torch.randn(3, 5, 24)
    torch.testing.assert_close(fast(x), plain(x), atol=0, rtol=0)  # fp32 and grad: the same F.linear
    with torch.no_grad():
        torch.testing.assert_close(fast(x), plain(x), atol=1e-6, rtol=1e-6)  # oneDNN's GEMM: only the order differs


@pytest.mark.skipif(not HAS_FUSED_LINEAR, reason="this build has no oneDNN linear")
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(7, 24), (2, 5, 6, 24), "strided"])
def test_linear_fp32_inference_runs_onednn_and_equals_f_linear(shape, bias):
    fast, plain = _linear_pair(bias)
    x = torch.randn(2, 5, 48)[..., ::2] if shape == "strided" else torch.randn(*shape)
    with torch.no_grad():
        ref = plain(x)
        out, ops = _ops(lambda: fast(x))
    assert any("_linear_pointwise" in k for k in ops) and not any(k == "aten::addmm" for k in ops)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)


@needs_bf16
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(7, 24), (2, 5, 6, 24), "strided"])
def test_linear_bf16_epilogue_equals_autocast_linear(shape, bias):
    fast, plain = _linear_pair(bias)
    x = torch.randn(2, 5, 48)[..., ::2] if shape == "strided" else torch.randn(*shape)  # a non-contiguous input too
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        ref = plain(x)
        out, ops = _ops(lambda: fast(x))
    assert any("_linear_pointwise" in k for k in ops)
    assert out.dtype == ref.dtype == torch.bfloat16 and out.shape == ref.shape
    torch.testing.assert_close(out.float(), ref.float(), atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("amp", [False, pytest.param(True, marks=needs_bf16)])
def test_jit_trace_records_the_plain_ops(amp):
    """torch.jit.trace (and the TorchScript ONNX exporter) sees real tensors: it must record F.linear and the plain
    conv + GELU, not the oneDNN ops (which it cannot record: "unsupported input list type")."""
    torch.manual_seed(0)
    mlp = DWConvMlp(16, 64).eval()
    x = torch.randn(2, 5, 7, 16)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=amp):
        traced = torch.jit.trace(mlp, x, check_trace=False)
        ref = mlp(x)
        out = traced(x)
    kinds = {n.kind() for n in traced.inlined_graph.nodes()}
    assert "aten::linear" in kinds and not any(k.startswith("mkldnn::") for k in kinds)
    torch.testing.assert_close(out.float(), ref.float(), atol=2e-2 if amp else 1e-5, rtol=0)


@needs_bf16
def test_linear_keeps_the_plain_path_where_it_must():
    fast, _ = _linear_pair()
    x = torch.randn(4, 24)
    with torch.autocast("cpu", torch.bfloat16):
        _, ops = _ops(lambda: fast(x).sum().backward())  # training: autograd needs the plain graph
    assert not any("_linear_pointwise" in k for k in ops) and fast.weight.grad is not None
    with torch.no_grad(), torch.autocast("cpu", torch.float16):
        _, ops = _ops(lambda: fast(x))  # autocast to another dtype: F.linear, which autocast casts
        assert not any("_linear_pointwise" in k for k in ops)
    with torch.no_grad():
        empty = fast(torch.randn(0, 24).bfloat16().float())
        double = fast.double()(x.double())  # fp64: the plain op
    assert empty.shape == (0, 40) and double.dtype == torch.float64


@needs_bf16
def test_dwconv_mlp_bf16_runs_fused_and_stays_close_to_fp32():
    torch.manual_seed(0)
    mlp = DWConvMlp(32, 128).eval()
    x = torch.randn(2, 9, 11, 32)
    with torch.no_grad():
        ref = mlp(x)
        with torch.autocast("cpu", torch.bfloat16):
            assert mlp._fusable(mlp.fc1(x))
            out, ops = _ops(lambda: mlp(x))
            with torch.enable_grad():
                plain = mlp(x)  # grad enabled: autocast's plain bf16 conv, then GELU
    assert any("_convolution_pointwise" in k for k in ops) and any("_linear_pointwise" in k for k in ops)
    assert out.dtype == torch.bfloat16 and out.is_contiguous() and out.shape == ref.shape
    # oneDNN's GELU reads the conv's fp32 accumulator: no further from fp32 than the plain bf16 path
    err, plain_err = (out.float() - ref).abs().max().item(), (plain.float() - ref).abs().max().item()
    assert err < 3e-2 * ref.abs().max().item() and err <= 1.5 * plain_err


@needs_bf16
def test_hilo_bf16_fast_path_matches_autocast_plain():
    torch.manual_seed(0)
    hilo = HiLo(64, num_heads=4, window_size=2, alpha=0.5).eval()
    x = torch.randn(2, 7, 9, 64)
    with torch.no_grad():
        ref = hilo(x)
        with torch.autocast("cpu", torch.bfloat16):
            out = hilo(x)
            with torch.enable_grad():
                plain = hilo(x)  # grad enabled: every Linear takes F.linear
    assert out.dtype == plain.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), plain.float(), atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(out.float(), ref, atol=5e-2, rtol=5e-2)
