"""litvit.viz.capture: records what it is asked for, changes no output, and leaves no hook behind."""

import pytest
import torch

from litvit.layers.dtm import DeformableTokenMerging
from litvit.viz import capture

from .conftest import tiny


def _hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_records_outputs_and_inputs_and_removes_its_hooks(family, image):
    model = tiny(family)
    with torch.no_grad():
        before = model(image)
    dtms = {n: m for n, m in model.named_modules() if isinstance(m, DeformableTokenMerging)}
    offset_convs = {n: m.dconv.conv_offset for n, m in dtms.items()}
    with torch.no_grad(), capture(offset_convs) as outs, capture(dtms, what="input") as ins:
        during = model(image)
        assert _hooks(model) == 2 * len(dtms)
    assert _hooks(model) == 0
    torch.testing.assert_close(during, before, rtol=0, atol=0)  # bit-identical: hooks return nothing
    assert len(dtms) == 3
    for name, dtm in dtms.items():
        (offset,) = outs[name]
        (x,) = ins[name]
        assert offset.shape == (1, 8, x.shape[1] // 2, x.shape[2] // 2)  # (B, 8, H/2, W/2) of a (B, H, W, C) input
        assert x.shape[-1] == dtm.in_dim


def test_one_record_per_call_and_no_hook_left_after_an_error(image):
    model = tiny("litv2")
    head = {"head": model.head}
    with pytest.raises(RuntimeError, match="boom"), torch.no_grad(), capture(head) as seen:
        model(image)
        model(torch.cat([image, image]))
        assert [t.shape[0] for t in seen["head"]] == [1, 2]
        raise RuntimeError("boom")
    assert _hooks(model) == 0


def test_bad_kind_is_refused():
    with pytest.raises(ValueError, match="what must be"), capture({}, what="grad"):
        pass
