"""Shared pieces of the demo tests: a small model, a test image, and a stand-in for litvit.viz.

The stand-in follows litvit.viz's contract (load_image, offsets, frequency, attention, cam and the *_figure plots)
so that the page, the server and the app are tested whether or not litvit.viz is importable; test_app.py also runs
the real one where it is."""

import io
import sys
import types

import matplotlib
import numpy as np
import pytest
import timm
import torch
from PIL import Image

matplotlib.use("Agg")


@pytest.fixture(scope="package")
def nano():
    """An untrained 10-class litv2_nano (32 px input): fast enough for every test."""
    torch.manual_seed(0)
    return timm.create_model("litv2_nano").eval()


def png_bytes(size=(48, 40), seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _figure(*_args):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1))
    fig.add_subplot().plot([0, 1], [1, 0])
    return fig


def fake_viz_modules(fail=()):
    """(litvit.viz, litvit.viz.plot) stand-ins; the pictures named in `fail` raise a RuntimeError."""
    viz = types.ModuleType("litvit.viz")
    plot = types.ModuleType("litvit.viz.plot")

    def failing(name, value):
        def f(*_args):
            if name in fail:
                raise RuntimeError(f"{name} failed on purpose\nsecond line")
            return value

        return f

    viz.load_image = lambda pil, model: (torch.zeros(1, 3, 32, 32), pil)
    viz.offsets = failing("offsets", "o")
    viz.frequency = failing("frequency", "f")
    viz.attention = failing("attention", "a")
    viz.cam = failing("cam", (torch.zeros(7, 7), 3))
    for name in ("offsets_figure", "frequency_figure", "attention_figure", "cam_figure"):
        setattr(plot, name, _figure)
    plot.save_png = lambda fig, path: fig.savefig(path)
    viz.plot = plot
    return viz, plot


@pytest.fixture
def fake_viz(monkeypatch):
    """Put the stand-in in place of litvit.viz for one test; returns a function that swaps in failing ones."""

    def install(fail=()):
        viz, plot = fake_viz_modules(fail)
        monkeypatch.setitem(sys.modules, "litvit.viz", viz)
        monkeypatch.setitem(sys.modules, "litvit.viz.plot", plot)

    install()
    return install
