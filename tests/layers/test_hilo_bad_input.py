"""HiLo refuses bad arguments and inputs at the boundary, with one message that names the bad value."""

import re

import pytest
import torch

from litvit.layers import HiLo


def test_dim_not_divisible_by_heads():
    with pytest.raises(ValueError, match=r"dim \(10\).*num_heads \(3\)"):
        HiLo(10, 3)


@pytest.mark.parametrize("alpha,shown", [(-0.1, "-0.1"), (1.5, "1.5"), ("0.5", "'0.5'"), (None, "None")])
def test_bad_alpha(alpha, shown):
    with pytest.raises(ValueError, match=r"alpha.*" + re.escape(shown)):
        HiLo(16, 4, alpha=alpha)


def test_bool_alpha_rejected():
    with pytest.raises(ValueError, match="alpha.*True"):
        HiLo(16, 4, alpha=True)


@pytest.mark.parametrize("window_size,shown", [(0, "0"), (-1, "-1"), (2.5, "2.5")])
def test_bad_window_size(window_size, shown):
    with pytest.raises(ValueError, match=r"window_size.*got " + re.escape(shown)):
        HiLo(16, 4, window_size=window_size)


@pytest.mark.parametrize("shape", [(4, 16), (1, 2, 2, 2, 16)])
def test_wrong_rank_input(shape):
    m = HiLo(16, 4)
    with pytest.raises(ValueError, match=rf"HiLo input.*{len(shape)}-D"):
        m(torch.randn(*shape))


def test_wrong_channels_map():
    m = HiLo(16, 4)
    with pytest.raises(ValueError, match=r"HiLo input.*16 channels.*\[1, 4, 4, 12\]"):
        m(torch.randn(1, 4, 4, 12))


def test_wrong_channels_tokens():
    m = HiLo(16, 4)
    with pytest.raises(ValueError, match=r"16 channels.*\[1, 16, 12\]"):
        m(torch.randn(1, 16, 12), size=(4, 4))


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_integer_dtype_is_type_error(dtype):
    m = HiLo(16, 4)
    with pytest.raises(TypeError, match=rf"HiLo input.*floating.*{str(dtype).split('.')[-1]}"):
        m(torch.zeros(1, 4, 4, 16, dtype=dtype))


def test_tokens_without_size():
    m = HiLo(16, 4)
    with pytest.raises(ValueError, match=r"HiLo input.*\(B, N, C\).*size=\(H, W\)"):
        m(torch.randn(1, 16, 16))


def test_size_inconsistent_with_tokens():
    m = HiLo(16, 4)
    with pytest.raises(ValueError, match=r"size=\(3, 5\) gives 15 tokens.*N=16"):
        m(torch.randn(1, 16, 16), size=(3, 5))


def test_size_inconsistent_with_map():
    m = HiLo(16, 4)
    with pytest.raises(ValueError, match=r"size=\(4, 5\).*\[1, 4, 4, 16\]"):
        m(torch.randn(1, 4, 4, 16), size=(4, 5))
