"""Large-batch CPU inference in batch slices: when it slices, by how much, and that nothing else slices."""

import pytest
import torch
from torch import nn

from litvit import allocator
from litvit.layers import batch_slices
from litvit.layers.batch_slices import SLICE_BYTES, images_per_slice, run_in_slices, widest_channels

MIB = 1 << 20


@pytest.fixture(autouse=True)
def _malloc_default(monkeypatch: pytest.MonkeyPatch):
    """malloc's default threshold, whatever an earlier test in this process (a `litvit` command) did to it."""
    monkeypatch.setattr(allocator, "_kept", False)


def test_widest_channels_is_the_widest_linear_output():
    block = nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 32), nn.GELU(), nn.Linear(32, 8))
    assert widest_channels(block) == 32
    assert widest_channels(nn.Sequential(nn.Identity())) == 0


def test_images_per_slice_fp32_stage_one_of_litv2_s():
    # LITv2-S stage 1 at batch 16: a 56 x 56 map whose FFN is 384 wide; 4.6 MiB per image in fp32, 73.5 MiB in all.
    x = torch.empty(16, 56, 56, 96)
    per_image = 56 * 56 * 384 * 4
    assert 16 * per_image > allocator.GLIBC_MMAP_CEILING
    assert images_per_slice(x, 384) == max(1, SLICE_BYTES // per_image)


def test_images_per_slice_counts_bf16_autocast_maps_at_two_bytes():
    # LITv2-S stage 2 at batch 16: 36.8 MiB in fp32 (sliced), 18.4 MiB in bf16 (under the ceiling: not sliced).
    x = torch.empty(16, 28, 28, 192)
    assert images_per_slice(x, 768) is not None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert images_per_slice(x, 768) is None
    stage_one = torch.empty(16, 56, 56, 96)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert images_per_slice(stage_one, 384) == SLICE_BYTES // (56 * 56 * 384 * 2)


def test_where_freed_memory_is_kept_the_batch_stays_whole_up_to_the_raised_threshold(monkeypatch):
    # The maps of a batch up to 1 GiB are reused from the heap: nothing to page-fault, and slicing only costs
    # (LITv2-S on an AMD EPYC: whole 1.02-1.12x sliced). Beyond it they are mmapped again, and the batch slices.
    monkeypatch.setattr(allocator, "_kept", True)
    assert allocator.mmap_threshold() == allocator.MMAP_THRESHOLD
    per_image = 56 * 56 * 384 * 4
    assert images_per_slice(torch.empty(16, 56, 56, 96), 384) is None
    assert images_per_slice(torch.empty(100, 56, 56, 96), 384) is None  # `litvit eval`'s batch: 459 MiB
    big = allocator.MMAP_THRESHOLD // per_image + 1
    assert images_per_slice(torch.empty(big, 56, 56, 96), 384) == max(1, SLICE_BYTES // per_image)


@pytest.mark.parametrize("shape", [(1, 56, 56, 96), (16, 7, 7, 768), (2, 8, 8, 4)])
def test_no_slicing_for_a_single_image_or_a_small_map(shape):
    assert images_per_slice(torch.empty(shape), 4 * shape[-1]) is None


def test_an_image_larger_than_a_slice_gets_a_slice_of_its_own():
    x = torch.empty(4, 200, 333, 96)  # a detection-size stage-1 map: 98 MiB per image in the FFN
    assert images_per_slice(x, 384) == 1


def _blocks() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.LayerNorm(6), nn.Linear(6, 24), nn.GELU(), nn.Linear(24, 6)).eval()


def test_run_in_slices_equals_the_whole_batch_and_slices_in_order(monkeypatch):
    monkeypatch.setattr(batch_slices, "mmap_threshold", lambda: 0)
    monkeypatch.setattr(batch_slices, "SLICE_BYTES", 2 * 5 * 5 * 24 * 4)  # two images per slice
    blocks = _blocks()
    x = torch.randn(5, 5, 5, 6)
    sizes: list = []

    def fn(part: torch.Tensor):
        sizes.append(part.shape[0])
        y = blocks(part)
        return y, y.sum(dim=(1, 2, 3))

    with torch.inference_mode():
        out = run_in_slices(blocks, fn, x, 24)
        assert out is not None
        assert sizes == [2, 2, 1]
        torch.testing.assert_close(out[0], blocks(x), rtol=0, atol=1e-6)
        torch.testing.assert_close(out[1], blocks(x).sum(dim=(1, 2, 3)), rtol=0, atol=1e-5)


@pytest.fixture
def one_image_slices(monkeypatch):
    """Slicing forced on (one image per slice) for a small 4-image map: (blocks, x, fn)."""
    monkeypatch.setattr(batch_slices, "mmap_threshold", lambda: 0)
    monkeypatch.setattr(batch_slices, "SLICE_BYTES", 1)
    blocks = _blocks()
    return blocks, torch.randn(4, 5, 5, 6), lambda part: (blocks(part),)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace")
def test_run_in_slices_leaves_autograd_and_tracing_to_the_plain_path(one_image_slices):
    blocks, x, fn = one_image_slices
    assert run_in_slices(blocks, fn, x, 24) is None  # grad enabled: training keeps the whole batch
    with torch.no_grad():
        assert run_in_slices(blocks, fn, x, 24) is not None
        assert run_in_slices(blocks, fn, x[0], 24) is None  # not a (B, H, W, C) map

    # torch.jit.trace records one whole-batch graph: a trace must not bake the slice sizes in.
    decisions: list = []

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = blocks

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            decisions.append(run_in_slices(self.blocks, fn, t, 24))
            return self.blocks(t)

    with torch.no_grad():
        torch.jit.trace(Probe(), x, check_trace=False)
    assert decisions == [None]


def test_an_empty_batch_is_not_sliced():
    assert images_per_slice(torch.empty(0, 56, 56, 96), 384) is None


def test_a_hooked_module_runs_whole(one_image_slices):
    """Forward hooks (`litvit.viz.capture`, a user's) see the batch they were given, not slices of it."""
    from litvit.viz.hooks import capture

    blocks, x, fn = one_image_slices
    with torch.no_grad():
        with capture({"fc1": blocks[1]}) as seen:
            assert run_in_slices(blocks, fn, x, 24) is None
        assert run_in_slices(blocks, fn, x, 24) is not None  # the hook is gone with the block
        handle = torch.nn.modules.module.register_module_forward_hook(lambda *_: None)
        try:
            assert run_in_slices(blocks, fn, x, 24) is None  # a global hook counts too
        finally:
            handle.remove()
    assert seen == {"fc1": []}
