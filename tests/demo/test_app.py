"""litvit.demo.app: the top-5, class names, the four pictures and errors in their places, without a server."""

import base64
import importlib
import io
import sys

import pytest
import timm
import torch
from PIL import Image

from litvit.demo.app import PICTURES, RANDOM_NOTE, class_names, load_demo_model, predict_top5, render, render_upload
from litvit.errors import ConfigError
from litvit.train.checkpoint import FORMAT, VERSION

from .conftest import png_bytes


def _image(seed=0):
    return Image.open(io.BytesIO(png_bytes(seed=seed)))


def test_top5_is_sorted_and_a_share_of_the_probability(nano):
    labels = class_names(nano)
    assert labels == [f"class {i}" for i in range(10)]
    top = predict_top5(nano, _image(), labels)
    probs = [p for _, p in top]
    assert len(top) == 5 and probs == sorted(probs, reverse=True)
    assert 0 < sum(probs) <= 1 + 1e-6
    assert len({n for n, _ in top}) == 5 and all(n in labels for n, _ in top)


def test_top5_of_a_model_with_fewer_classes():
    model = timm.create_model("litv2_nano", num_classes=3).eval()
    top = predict_top5(model, _image().convert("L"), ["a", "b", "c"])  # grayscale is read as RGB
    assert sorted(n for n, _ in top) == ["a", "b", "c"]
    assert sum(p for _, p in top) == pytest.approx(1.0, abs=1e-5)


def test_imagenet_names_for_a_1000_class_model():
    model = timm.create_model("litv2_nano", num_classes=1000).eval()
    labels = class_names(model)
    assert labels[0] == "tench, Tinca tinca" and len(labels) == 1000
    assert all(n in labels for n, _ in predict_top5(model, _image(), labels))


def test_stored_class_names_of_a_litvit_run(tmp_path):
    model = timm.create_model("litv2_nano", num_classes=3)
    path = tmp_path / "best.pth"
    classes = ["cat", "dog", "fish"]
    torch.save(
        {
            "format": FORMAT,
            "version": VERSION,
            "config": {"model": "litv2_nano"},
            "resolved": {"num_classes": 3},
            "model": model.state_dict(),
            "classes": classes,
        },
        path,
    )
    loaded, labels, note, name = load_demo_model(None, str(path))
    assert labels == classes and note == "" and name == "litv2_nano"
    assert {n for n, _ in predict_top5(loaded, _image(), labels)} == set(classes)


def test_random_weights_are_named_on_the_page_and_bad_names_refused():
    _, labels, note, name = load_demo_model("litv2_nano", None)
    assert note == RANDOM_NOTE and name == "litv2_nano" and len(labels) == 10
    with pytest.raises(ConfigError, match="unknown model"):
        load_demo_model("litv2_nanoo", None)


@pytest.mark.parametrize(
    "data, says",
    [(b"", "empty upload"), (b"not an image at all", "not an image"), (png_bytes()[:60], "not an image")],
)
def test_a_bad_image_is_an_error_entry_not_an_exception(nano, fake_viz, data, says):
    out = render_upload(nano, data, class_names(nano))
    assert set(out) == {"error"} and says in out["error"] and "\n" not in out["error"]


def test_render_gives_four_pngs_and_keeps_the_others_when_one_fails(nano, fake_viz):
    out = render_upload(nano, png_bytes(), class_names(nano))
    assert [p["key"] for p in out["pictures"]] == [k for k, _ in PICTURES]
    for pic in out["pictures"]:
        assert pic["error"] is None and base64.b64decode(pic["png"]).startswith(b"\x89PNG")
    fake_viz(fail=("frequency",))  # e.g. LIT-S: no HiLo, so no frequency curves
    out = render(nano, _image(), class_names(nano))
    by_key = {p["key"]: p for p in out["pictures"]}
    assert by_key["frequency"]["png"] is None and by_key["frequency"]["error"] == "frequency failed on purpose"
    assert all(by_key[k]["png"] for k in ("offsets", "attention", "cam"))
    assert len(out["top5"]) == 5


def test_without_litvit_viz_the_top5_still_shows(nano, monkeypatch):
    monkeypatch.setitem(sys.modules, "litvit.viz", None)  # import fails
    out = render(nano, _image(), class_names(nano))
    assert len(out["top5"]) == 5
    assert all(p["png"] is None and "litvit.viz" in p["error"] for p in out["pictures"])


def _real_viz_missing() -> str:
    try:
        importlib.import_module("litvit.viz")
        importlib.import_module("litvit.viz.plot")
    except ImportError as e:
        return f"litvit.viz is not importable yet ({e})"
    return ""


@pytest.mark.needs("pytorch_grad_cam")
@pytest.mark.skipif(bool(_real_viz_missing()), reason=_real_viz_missing() or "-")
@pytest.mark.parametrize("name", ["litv2_nano", "lit_ti"])
def test_render_with_the_real_litvit_viz(name):
    """The real pictures: all four for LITv2; LIT has no HiLo, so its frequency picture is an error in its place."""
    model = timm.create_model(name).eval()
    out = render(model, _image(), class_names(model))
    by_key = {p["key"]: p for p in out["pictures"]}
    expect_png = {"offsets", "frequency", "attention", "cam"} if name.startswith("litv2") else {"offsets", "cam"}
    for key in expect_png:
        assert by_key[key]["png"], (key, by_key[key]["error"])
    for pic in out["pictures"]:
        assert bool(pic["png"]) != bool(pic["error"])
