"""No op of a forward or backward reads a tensor's value back to the host.

On a GPU such an op (`.item()`, `bool(t)`, `nonzero`, a data-dependent check) waits for every kernel queued before it,
so one per block stalls the whole forward. A dispatch mode sees every op, and its presence makes litvit take the plain
ops a GPU runs (the CPU fast paths step aside under dispatch modes), so the check needs no GPU.
"""

from typing import List

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .test_models import KINDS, tiny

# ops whose result depends on a tensor's values on the host
HOST_READS = {"_local_scalar_dense", "is_nonzero", "nonzero", "equal", "allclose", "unique", "masked_select"}


class HostReads(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.seen: List[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in HOST_READS:
            self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["eval", "train", "bf16-eval"])
def test_no_host_reads(kind, mode):
    torch.manual_seed(0)
    model = tiny(kind, drop_path_rate=0.1).train(mode == "train")
    x = torch.randn(3, 3, 65, 97)  # not a multiple of 32: the padding paths too
    reads = HostReads()
    with torch.autocast("cpu", torch.bfloat16, enabled=mode.startswith("bf16")), reads:
        out = model(x)
        if mode == "train":
            out.float().logsumexp(1).mean().backward()
    assert out.shape == (3, 10)
    assert reads.seen == []


def test_the_check_sees_a_host_read():
    reads = HostReads()
    with reads:
        bool(torch.ones(1) > 0)
    assert reads.seen
