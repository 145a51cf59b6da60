"""Grad-CAM through pytorch-grad-cam: a heat map in [0, 1] at the input size, depending on the class explained."""

import numpy as np
import pytest
import torch

from litvit.errors import ConfigError
from litvit.viz import cam

from .conftest import tiny

pytestmark = pytest.mark.needs("pytorch_grad_cam")


@pytest.mark.parametrize("size", [(64, 64), (100, 84)])  # odd: LIT-Ti stage 4 is 3 x 2 tokens
def test_heat_in_unit_range_and_class_dependent(family, size):
    model = tiny(family)
    x = torch.randn(1, 3, *size)
    heat, index = cam(model, x)
    with torch.no_grad():
        assert index == int(model(x).argmax())
    assert heat.shape == size and heat.dtype == np.float32
    assert heat.min() >= 0 and heat.max() <= 1
    others = [cam(model, x, target=t)[0] for t in range(5) if t != index]
    assert max(np.abs(other - heat).max() for other in others) > 0.05
    assert sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules()) == 0


def test_bad_target(image):
    with pytest.raises(ConfigError, match="class index"):
        cam(tiny("litv2"), image, target=10)  # litv2_nano has 10 classes
