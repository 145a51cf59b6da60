"""No input crashes the process: a NaN / Inf pixel, an empty batch, an image of the wrong dtype.

The non-finite cases used to segfault (torchvision's CPU deformable conv indexes memory with a NaN sample position),
so they run in a subprocess: a crash fails the test instead of killing pytest.
"""

import subprocess
import sys
import textwrap

import pytest
import timm
import torch

import litvit  # noqa: F401
from litvit.models import create_backbone

# Small members of each family (a few hundred thousand to 1.4M parameters): the code paths of the released ones.
SMALL_LIT = dict(depths=(1, 1, 1, 1), embed_dim=32, num_heads=(1, 2, 4, 8))
SMALL_LIT_TI = dict(depths=(1, 1, 1, 1), embed_dims=(16, 32, 64, 128), num_heads=(1, 2, 4, 8))
CLASSIFIERS = {
    "litv2_nano": {},
    "lit_s": dict(img_size=64, **SMALL_LIT),
    "lit_ti": dict(img_size=64, **SMALL_LIT_TI),
}
BACKBONES = {"litv2_s": SMALL_LIT, "lit_s": SMALL_LIT, "lit_ti": SMALL_LIT_TI}


def run_python(code: str, timeout: float = 240) -> str:
    """Run `code` in a fresh interpreter; fail (not crash) on a non-zero exit or a signal such as SIGSEGV."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, (
        f"exit status {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-3000:]}"
    )
    return proc.stdout


# ---------------------------------------------------------------------------------------- non-finite pixels

_NONFINITE_CHECK = """
import torch, timm, litvit
from litvit.models import create_backbone

CLASSIFIERS = {classifiers!r}
BACKBONES = {backbones!r}
torch.manual_seed(0)
x = torch.randn(3, 3, 64, 64)

def corrupt(value):
    bad = x.clone()
    bad[1, 0, 10, 20] = value  # one pixel of image 1
    return bad

def check(tag, run):
    clean = run(x)
    for value in (float("nan"), float("inf"), float("-inf")):
        print(tag, value, flush=True)  # the last line printed names the case if the process dies
        out = run(corrupt(value))
        assert out[1].isnan().all(), (tag, value, out[1])
        assert torch.equal(out[[0, 2]], clean[[0, 2]]), (tag, value)

for name, kwargs in CLASSIFIERS.items():
    model = timm.create_model(name, num_classes=5, **kwargs).eval()
    with torch.no_grad():
        check(name, model)
        if name == "litv2_nano":
            check(name + " scripted", torch.jit.script(model))
    model.train()  # the sampled (grid_sample) deformable path; BatchNorm's batch statistics spread the NaN
    print(name, "train", flush=True)
    model(corrupt(float("nan"))).sum().backward()

for name, kwargs in BACKBONES.items():
    backbone = create_backbone(name, task="det", **kwargs).eval()
    with torch.no_grad():
        # the last map comes after three token merges: all NaN for the corrupted image
        check(name + " backbone", lambda img: backbone(img[..., :48])[-1])
print("done")
"""


def test_non_finite_pixel_gives_non_finite_logits_for_that_image_only():
    out = run_python(_NONFINITE_CHECK.format(classifiers=CLASSIFIERS, backbones=BACKBONES))
    assert out.strip().endswith("done"), out


# --------------------------------------------------------------------------------------------- empty batch


@pytest.mark.parametrize("name", list(CLASSIFIERS))
def test_empty_batch_gives_empty_logits(name):
    model = timm.create_model(name, num_classes=7, **CLASSIFIERS[name]).eval()
    x = torch.randn(0, 3, 64, 64)
    with torch.no_grad():
        assert model(x).shape == (0, 7)
        assert [f.shape[0] for f in model.forward_intermediates(x, intermediates_only=True)] == [0, 0, 0, 0]
        assert torch.jit.script(model)(x).shape == (0, 7)
    model.train()
    model(x).sum().backward()


@pytest.mark.parametrize("name", list(BACKBONES))
def test_empty_batch_gives_four_empty_maps(name):
    backbone = create_backbone(name, task="det", **BACKBONES[name]).eval()
    with torch.no_grad():
        outs = backbone(torch.randn(0, 3, 64, 96))
    assert len(outs) == 4
    assert [tuple(o.shape[:1]) + tuple(o.shape[2:]) for o in outs] == [(0, 16, 24), (0, 8, 12), (0, 4, 6), (0, 2, 3)]


# ------------------------------------------------------------------------------------------- input dtype


@pytest.mark.parametrize("name", list(CLASSIFIERS))
@pytest.mark.parametrize(
    ("dtype", "fix"), [(torch.float64, "model.to(torch.float64)"), (torch.float16, "model.to(torch.float16)")]
)
def test_wrong_input_dtype_is_a_type_error_naming_the_fix(name, dtype, fix):
    model = timm.create_model(name, num_classes=5, **CLASSIFIERS[name]).eval()
    with pytest.raises(TypeError) as info:
        model(torch.randn(1, 3, 64, 64, dtype=dtype))
    message = str(info.value)
    assert "\n" not in message
    assert fix in message and "x.float()" in message and str(dtype) in message


@pytest.mark.parametrize("name", list(CLASSIFIERS))
@pytest.mark.parametrize(
    ("make", "shown"),
    [
        (lambda: [torch.randn(3, 64, 64)], "got list; convert it with torch.stack(...)"),
        (lambda: torch.randn(1, 3, 64, 64).numpy(), "got ndarray; convert it with torch.as_tensor(...)"),
        (lambda: torch.empty(1, 3, 64, 64, device="meta"), "is on meta but the model's weights are on cpu"),
    ],
)
def test_input_that_is_no_tensor_or_on_another_device_is_a_type_error(name, make, shown):
    model = timm.create_model(name, num_classes=5, **CLASSIFIERS[name]).eval()
    with pytest.raises(TypeError, match=shown.replace("(", r"\(").replace(")", r"\)")):
        model(make())


@pytest.mark.parametrize("name", list(CLASSIFIERS))
def test_autocast_and_low_precision_models_keep_working(name):
    model = timm.create_model(name, num_classes=5, **CLASSIFIERS[name]).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(x).dtype == torch.bfloat16  # fp32 image, fp32 weights: autocast casts both
        assert model(x.bfloat16()).isfinite().all()
    with pytest.raises(TypeError, match="float64"), torch.autocast("cpu", dtype=torch.bfloat16):
        model(x.double())  # autocast leaves float64 alone: still a mismatch
    model = model.to(torch.bfloat16)
    with torch.no_grad():
        assert model(x.bfloat16()).dtype == torch.bfloat16
    with pytest.raises(TypeError, match=r"x\.bfloat16\(\)"):
        model(x)


def test_float64_model_takes_float64_input():
    model = timm.create_model("litv2_nano", num_classes=5).eval().double()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64, dtype=torch.float64)).dtype == torch.float64
