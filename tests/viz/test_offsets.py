"""DTM offsets traced to input pixels: exactly the regular grid with zero offsets, shifted by the arithmetic with
known offsets, for LITv2, LIT-S/M/B and LIT-Ti at any input size."""

import numpy as np
import pytest
import torch

from litvit.errors import ConfigError
from litvit.layers.dtm import DeformableTokenMerging
from litvit.viz import offsets
from litvit.viz.dtm_trace import default_targets, trace_points

from .conftest import tiny

TAPS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)  # (i, j) of tap t = 2i + j


def _expected(targets: np.ndarray, bias: np.ndarray, patch: int = 4) -> np.ndarray:
    """Pixels of the 64 points per target after 3 merges whose offsets are the constant (4, 2) `bias` per tap:
    stage-1 position 8 p + 4 (tap_a + b_a) + 2 (tap_b + b_b) + (tap_c + b_c), point index 16 a + 4 b + c."""
    step = TAPS + bias  # (4, 2)
    per = (4 * step[:, None, None] + 2 * step[None, :, None] + step[None, None, :]).reshape(64, 2)
    stage1 = 8 * targets[:, None, :] + per[None]
    return (stage1 + 0.5) * patch - 0.5


@pytest.mark.parametrize("size", [(64, 64), (70, 58)])
def test_zero_offsets_give_the_regular_grid(family, size):
    model = tiny(family)
    r = offsets(model, torch.randn(1, 3, *size), grid=4)
    assert r.points.shape == (len(r.targets), 64, 2)
    np.testing.assert_array_equal(r.points, _expected(r.targets, np.zeros((4, 2))))
    for t, pts in zip(r.targets, r.points):  # the 8 x 8 block of stage-1 patch centres under each target
        ys, xs = np.unique(pts[:, 0]), np.unique(pts[:, 1])
        np.testing.assert_array_equal(ys, (8 * t[0] + np.arange(8) + 0.5) * 4 - 0.5)
        np.testing.assert_array_equal(xs, (8 * t[1] + np.arange(8) + 0.5) * 4 - 0.5)
    np.testing.assert_array_equal(r.target_pixels, (r.targets + 0.5) * 32 - 0.5)
    assert r.stride == 32 and r.image_size == size


def test_constant_offsets_move_the_points_where_the_arithmetic_says(family, image):
    model = tiny(family)
    bias = np.array([[0.5, -0.25], [0.0, 1.0], [-1.0, 0.75], [0.25, 0.0]])  # (tap, [dy, dx])
    for m in model.modules():
        if isinstance(m, DeformableTokenMerging):
            m.dconv.conv_offset.bias.data = torch.tensor(bias.reshape(8), dtype=torch.float32)
    r = offsets(model, image, targets=np.array([[0, 0], [1, 1], [0, 1]]))
    for field in r.fields:  # what the hooks saw is the constant the model sampled with
        np.testing.assert_allclose(field, np.broadcast_to(bias.reshape(8, 1, 1), field.shape))
    np.testing.assert_allclose(r.points, _expected(r.targets, bias), rtol=0, atol=1e-5)


def test_trace_interpolates_offsets_between_tokens():
    """Two merges by hand: tap 0 of the last moves 0.5 rows down, landing between tokens (0, 0) and (1, 0) of the
    map before, whose column offsets 0 and 1 blend to 0.5."""
    last = np.zeros((8, 1, 1))
    last[0] = 0.5
    first = np.zeros((8, 2, 2))
    first[1, 1, 0] = 1.0  # dx of tap 0 at token (1, 0)
    pts = trace_points([first, last], np.array([[0, 0]]))
    assert pts.shape == (1, 16, 2)
    np.testing.assert_allclose(pts[0, 0], [1.0, 0.5])  # 2 * (0.5, 0) + tap (0, 0) + (0, 0.5)
    np.testing.assert_allclose(pts[0, 5], [2 * 0 + 0 + 0, 2 * 1 + 1 + 0])  # tap 1 of last, tap 1 of first: no shift


def test_default_targets_and_bad_targets(image):
    np.testing.assert_array_equal(default_targets(7, 7, 2), [[1, 1], [1, 5], [5, 1], [5, 5]])
    assert len(default_targets(2, 1, 4)) == 2  # fewer tokens than asked
    model = tiny("litv2")
    with pytest.raises(ConfigError, match="last map"):
        offsets(model, image, targets=np.array([[5, 0]]))
    with pytest.raises(ConfigError, match="grid"):
        offsets(model, image, grid=0)
