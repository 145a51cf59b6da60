"""`litvit viz`: files written per image, unreadable images named and skipped, bad inputs one line with exit 2."""

import sys

import numpy as np
import pytest
import torch
from PIL import Image

from litvit.cli import main

from .conftest import tiny


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.jpg"):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(folder / name)
    (folder / "broken.png").write_bytes(b"not an image")
    return folder


def _err_lines(capsys) -> list:
    return [line for line in capsys.readouterr().err.splitlines() if line]


@pytest.mark.parametrize(
    "kind", ["offsets", "attention", pytest.param("cam", marks=pytest.mark.needs("pytorch_grad_cam"))]
)
def test_writes_a_figure_and_arrays_per_image(kind, images, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["viz", kind, str(images), "--model", "litv2_nano", "--out", str(out), "--img-size", "64"]) == 0
    err = _err_lines(capsys)
    assert any("random weights" in line for line in err)
    assert any("broken.png" in line and "skipped" in line for line in err)
    for stem in ("a", "b"):
        with Image.open(out / f"{stem}_{kind}.png") as im:
            assert np.asarray(im.convert("L")).std() > 5
        arrays = np.load(out / f"{stem}_{kind}.npz")
        if kind == "offsets":
            assert arrays["points"].shape == (4, 64, 2)
        elif kind == "cam":
            assert arrays["heat"].shape == (64, 64)
        else:
            assert arrays["maps/layers.3.blocks.0.attn.lofi"].shape == (8, 64, 64)


def test_cam_without_pytorch_grad_cam_is_one_line(images, tmp_path, capsys, monkeypatch):
    """An optional dependency that is not installed: the extra to install, not a traceback (exit 2)."""
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam", None)  # `import pytorch_grad_cam` raises ImportError
    assert main(["viz", "cam", str(images / "a.png"), "--model", "litv2_nano", "--out", str(tmp_path / "o")]) == 2
    err = _err_lines(capsys)
    assert err[-1] == "litvit viz: cam needs pytorch-grad-cam: pip install 'litvit[viz]'"
    assert not any("Traceback" in line for line in err)


def test_frequency_writes_one_mean_figure(images, tmp_path):
    out = tmp_path / "out"
    assert main(["viz", "frequency", str(images / "a.png"), str(images / "b.jpg"), "--model", "litv2_nano",
                 "--out", str(out)]) == 0  # fmt: skip
    arrays = np.load(out / "frequency.npz")
    assert arrays["hifi"].shape == arrays["lofi"].shape and (arrays["hifi"][:, 0] == 0).all()
    assert (out / "frequency.png").stat().st_size > 1000


def test_checkpoint_is_loaded(images, tmp_path):
    model = tiny("litv2")
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "conv_offset"):
                m.conv_offset.bias.fill_(0.5)
    ckpt = tmp_path / "w.pth"
    torch.save(model.state_dict(), ckpt)
    out = tmp_path / "out"
    args = ["viz", "offsets", str(images / "a.png"), "--model", "litv2_nano", "--checkpoint", str(ckpt)]
    assert main([*args, "--out", str(out), "--grid", "1"]) == 0
    points = np.load(out / "a_offsets.npz")["points"]  # 32 px input: one last-map token, every tap 0.5 further
    np.testing.assert_allclose(points.mean(axis=1), [[15.5 + 7 * 0.5 * 4] * 2])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "litv9_huge"], "unknown model"),
        (["--model", "litv2_nano", "--checkpoint", "missing.pth"], "does not exist"),
        (["--model", "litv2_nano", "--grid", "0"], "--grid"),
        (["--model", "litv2_nano", "--query", "2", "0.5"], "--query"),
        (["--model", "litv2_nano", "--img-size", "100000"], "--img-size must be a whole number of pixels from 1 to"),
        (["--model", "litv2_nano", "--out", "{a_png}/o"], "cannot create output folder"),
    ],
)
def test_bad_inputs_are_one_line_exit_2(extra, message, images, tmp_path, capsys):
    extra = [a.format(a_png=images / "a.png") for a in extra]
    assert main(["viz", "offsets", str(images / "a.png"), "--out", str(tmp_path / "o"), *extra]) == 2
    err = [line for line in _err_lines(capsys) if "random weights" not in line]
    assert len(err) == 1 and message in err[0] and err[0].startswith("litvit viz:"), err
    assert not (tmp_path / "o").exists()


def test_corrupt_checkpoint_and_no_readable_image(images, tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage")
    assert main(["viz", "cam", str(images / "a.png"), "--model", "litv2_nano", "--checkpoint", str(bad)]) == 2
    assert len(_err_lines(capsys)) == 1
    assert main(["viz", "cam", str(images / "broken.png"), "--model", "litv2_nano", "--out", str(tmp_path)]) == 2
    err = _err_lines(capsys)
    assert "broken.png" in err[-2] and "no readable image" in err[-1]


def test_a_full_disk_is_one_line_and_leaves_no_half_written_file(images, tmp_path, capsys, monkeypatch):
    import errno

    from litvit import checkpoint

    real = checkpoint.atomic_write

    def full_for_arrays(path, write):
        if str(path).endswith(".npz"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, write)

    monkeypatch.setattr(checkpoint, "atomic_write", full_for_arrays)
    out = tmp_path / "o"
    assert main(["viz", "offsets", str(images / "a.png"), "--model", "litv2_nano", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the note on random weights
    assert err == f"litvit viz: cannot write {out / 'a_offsets.npz'} (No space left on device): pick another --out"
    assert sorted(p.name for p in out.iterdir()) == ["a_offsets.png"]  # the picture, whole
