"""DWConvMlp's fused inference path (oneDNN depthwise conv + GELU) equals the plain one."""

import pytest
import torch
from torch.profiler import profile

from litvit.layers import DWConvMlp
from litvit.layers.fused_cpu import HAS_FUSED_CONV

pytestmark = pytest.mark.skipif(not HAS_FUSED_CONV, reason="this torch build has no oneDNN fused convolution")


@pytest.mark.parametrize("size", [(7, 9), (14, 14), (1, 5)])
def test_fused_inference_equals_plain_path(size):
    torch.manual_seed(0)
    mlp = DWConvMlp(16, 64).eval()
    x = torch.randn(2, *size, 16)
    with torch.enable_grad():
        plain = mlp(x)  # grad enabled: the plain conv + GELU path
    with torch.no_grad(), profile() as prof:
        fused = mlp(x)
    assert any("_convolution_pointwise" in e.key for e in prof.key_averages())  # the fused kernel ran
    assert fused.is_contiguous() and fused.shape == plain.shape
    torch.testing.assert_close(fused, plain.detach(), atol=1e-6, rtol=1e-6)


def test_fused_path_not_taken_in_bf16_or_training():
    mlp = DWConvMlp(16, 64)
    x = torch.randn(1, 6, 6, 16)
    with torch.no_grad():
        assert mlp._fusable(mlp.fc1(x))
        assert not mlp._fusable(mlp.fc1(x).bfloat16())
    assert not mlp._fusable(mlp.fc1(x))  # grad enabled


def test_compile_traces_the_plain_path():
    """Under torch.compile the oneDNN op is not traced: inductor's fake kernel of it promised a channels-last output
    the real op did not give once the weights were frozen (LITv2-S, `litvit bench --runtime frozen`, AMX Xeon)."""
    torch.manual_seed(0)
    mlp = DWConvMlp(16, 64).eval()
    targets = []

    def backend(gm, example_inputs):
        targets.extend(str(n.target) for n in gm.graph.nodes)
        return gm.forward

    x = torch.randn(2, 7, 9, 16)
    with torch.no_grad():
        out = torch.compile(mlp, backend=backend, fullgraph=True)(x)
        ref = mlp(x)
    assert targets and not any("_convolution_pointwise" in t for t in targets)
    assert any("conv2d" in t for t in targets)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)
