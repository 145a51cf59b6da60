"""torch.export programs (.pt2) with dynamic sizes, the size limits they state, and an AOTInductor package that
runs without litvit."""

import subprocess
import sys

import pytest
import torch

from litvit.errors import ExportError
from litvit.export import export_aoti, export_program, size_limits
from litvit.export.check import check_export
from litvit.models import LITv2

from .conftest import TINY, tiny_model

PT2_SIZES = [(1, 97, 131), (3, 61, 61), (1, 150, 250), (3, 64, 100)]


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    model = tiny_model("lit_ti")  # position embeddings resized in the graph: the hardest family to make dynamic
    return model, export_program(model, tmp_path_factory.mktemp("pt2") / "lit_ti.pt2", 64)


def test_size_limits_of_every_family():
    for family in ("litv2", "lit", "lit_ti", "lit_backbone"):
        assert size_limits(tiny_model(family)) == (29, 61)


def test_pt2_matches_pytorch_at_dynamic_sizes(program):
    model, path = program
    rows = check_export(model, path, "pt2", PT2_SIZES, tolerance=1e-5)
    assert all(r.ok for r in rows), rows


def test_pt2_refuses_sides_below_its_stated_minimum(program):
    module = torch.export.load(str(program[1])).module()
    with pytest.raises(Exception, match=r">= 61"):
        module(torch.randn(1, 3, 100, 37))


def test_dynamic_export_refuses_a_small_tracing_size(tmp_path):
    with pytest.raises(ExportError, match="at least 61x61.*--static"):
        export_program(tiny_model("litv2"), tmp_path / "x.pt2", 40)
    with pytest.raises(ExportError, match="at least 29"):
        export_program(tiny_model("litv2"), tmp_path / "x.pt2", (20, 64), dynamic=False)
    assert not list(tmp_path.iterdir())


def test_dynamic_export_of_a_model_built_for_small_inputs_traces_where_every_size_works(tmp_path):
    """A 32 px run's model (the digits recipe) has img_size 32, below the dynamic minimum: with no size given the
    export traces at 61 instead of refusing a size the user never passed."""
    model = LITv2(**{**TINY, "img_size": 32}).eval()
    path = export_program(model, tmp_path / "small.pt2")
    rows = check_export(model, path, "pt2", [(1, 61, 61), (2, 97, 131)], tolerance=1e-5)
    assert all(r.ok for r in rows), rows


RUN_WITHOUT_LITVIT = """
import sys
sys.modules["litvit"] = None  # litvit is not importable in this process
try:
    import litvit
    raise SystemExit("litvit was importable")
except ImportError:
    pass
import torch, torchvision  # torchvision registers deform_conv2d, which the package calls
from torch._inductor import aoti_load_package
run = aoti_load_package(sys.argv[1])
for x, ref in torch.load(sys.argv[2]):
    diff = (run(x) - ref).abs().max().item()
    assert diff < 1e-5, diff
print("ok", len(torch.load(sys.argv[2])))
"""


def test_aoti_package_runs_without_litvit(tmp_path):
    """One AOTInductor compile (slow on few cores: the smallest model that has every layer), loaded in a process
    where litvit cannot be imported, at dynamic batch and sizes."""
    from litvit.models import LITv2

    torch.manual_seed(0)
    model = LITv2(embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], num_classes=3, img_size=64).eval()
    package = export_aoti(model, tmp_path / "tiny.aoti.pt2", 64)
    cases = [torch.randn(b, 3, h, w) for b, h, w in [(1, 61, 61), (3, 97, 131), (2, 64, 64)]]
    with torch.no_grad():
        torch.save([(x, model(x)) for x in cases], tmp_path / "cases.pt")
    done = subprocess.run(
        [sys.executable, "-c", RUN_WITHOUT_LITVIT, str(package), str(tmp_path / "cases.pt")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok 3")
