"""Figures decode as PNGs with content; load_image gives the model's eval tensor and the picture it shows."""

import numpy as np
import pytest
import torch
from PIL import Image

from litvit.viz import attention, cam, frequency, load_image, offsets, plot

from .conftest import tiny


def _photo(h: int = 80, w: int = 120) -> Image.Image:
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 // w, y * 255 // h, (x + y) % 64 * 4], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb)


def _check_png(path) -> None:
    with Image.open(path) as im:
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels.std() > 10  # not a blank canvas


def test_load_image_matches_the_model_transform(tmp_path):
    model = tiny("litv2")  # input 32 x 32, crop_pct 1: a squash resize
    path = tmp_path / "photo.png"
    _photo().save(path)
    x, shown = load_image(path, model)
    assert x.shape == (1, 3, 32, 32) and shown.size == (32, 32) and shown.mode == "RGB"
    mean = torch.tensor(model.pretrained_cfg["mean"]).view(3, 1, 1)
    std = torch.tensor(model.pretrained_cfg["std"]).view(3, 1, 1)
    back = torch.from_numpy(np.array(shown)).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(back, (x[0] * std + mean).clamp(0, 1), atol=1 / 255, rtol=0)
    x2, shown2 = load_image(_photo(), model, img_size=48)  # a PIL image, another size
    assert x2.shape == (1, 3, 48, 48) and shown2.size == (48, 48)


@pytest.mark.needs("pytorch_grad_cam")
def test_every_figure_writes_a_png(tmp_path):
    model = tiny("litv2")
    x, shown = load_image(_photo(), model, img_size=64)
    figures = {
        "offsets": plot.offsets_figure(offsets(model, x), shown),
        "frequency": plot.frequency_figure(frequency(model, x)),
        "attention": plot.attention_figure(attention(model, x), shown),
        "cam": plot.cam_figure(cam(model, x)[0], shown),
    }
    for name, fig in figures.items():
        path = plot.save_png(fig, tmp_path / "sub" / f"{name}.png")
        _check_png(path)
