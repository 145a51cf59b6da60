"""DWConvMlp's plain path (GPU, float64, dispatch modes) lets go of each hidden map once the next op has read it.

The FFN's hidden map is the largest tensor of a LITv2 forward (stage 1: 4 x the residual stream). Written as
`act(dwconv(fc1_out))`, fc1's output stayed referenced while GELU allocated its own, so inference held three hidden
maps instead of two: LITv2-S's peak inference memory at batch 64 was 1066 MB against the official forward's 735.
"""

import weakref
from typing import Optional

import torch
from torch import nn

from litvit.layers import DWConvMlp


class _AliveCheck(nn.GELU):
    """GELU that records whether fc1's output is still alive when it runs."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1_out: Optional[weakref.ref] = None
        self.fc1_alive_at_act: Optional[bool] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.fc1_alive_at_act = self.fc1_out is not None and self.fc1_out() is not None
        return super().forward(x)


def test_fc1_output_is_freed_before_gelu_allocates():
    torch.manual_seed(0)
    mlp = DWConvMlp(8, 32, act_layer=_AliveCheck).double().eval()  # float64: the plain conv + GELU path on any CPU

    def remember(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        mlp.act.fc1_out = weakref.ref(out)

    mlp.fc1.register_forward_hook(remember)
    x = torch.randn(2, 6, 5, 8, dtype=torch.float64)
    with torch.no_grad():
        y = mlp(x)
    assert mlp.act.fc1_out is not None  # the hook ran
    assert mlp.act.fc1_alive_at_act is False
    with torch.no_grad():  # the same function as before
        ref = mlp.fc2(nn.functional.gelu(mlp.dwconv(mlp.fc1(x))))
    torch.testing.assert_close(y, ref, rtol=0, atol=0)
