"""Photos are shown to the model upright, as a viewer shows them: a phone stores a portrait photo sideways with an
EXIF orientation tag. `litvit predict`, `viz` and `demo` follow the tag; training and evaluation read the stored
pixels (as timm's and the official loaders do), and a corrupt EXIF block leaves the pixels usable."""

import io

import numpy as np
import pytest
import timm
import torch
from PIL import Image

import litvit  # noqa: F401
from litvit.data.folder import load_rgb, upright
from litvit.demo.app import decode_image
from litvit.predict import predict
from litvit.viz import load_image

ORIENTATION = 0x0112


def _upright_picture() -> Image.Image:
    a = np.zeros((40, 72, 3), np.uint8)  # 72 wide, 40 tall: red left half, blue right half
    a[:, :36, 0] = 255
    a[:, 36:, 2] = 255
    return Image.fromarray(a)


def _tagged_jpeg(path, tag: int = 6) -> None:
    """The picture as a camera stores it: turned a quarter to the left, with tag 6 (turn right to show)."""
    exif = Image.Exif()
    exif[ORIENTATION] = tag
    _upright_picture().transpose(Image.Transpose.ROTATE_90).save(path, "JPEG", quality=95, exif=exif.tobytes())


@pytest.fixture
def photos(tmp_path):
    """A tagged JPEG, and a PNG of exactly the pixels a viewer shows for it (the decoded JPEG turned upright)."""
    _tagged_jpeg(tmp_path / "tagged.jpg")
    with Image.open(tmp_path / "tagged.jpg") as im:
        shown = im.convert("RGB").transpose(Image.Transpose.ROTATE_270)  # tag 6: turn a quarter to the right
    shown.save(tmp_path / "shown.png")
    return tmp_path / "tagged.jpg", tmp_path / "shown.png"


def test_loader_turns_photos_upright_only_when_asked(photos):
    tagged, shown = photos
    stored = load_rgb(str(tagged))
    assert stored.size == (40, 72)  # evaluation and training: the pixels as stored
    turned = load_rgb(str(tagged), exif_orientation=True)
    assert turned.size == (72, 40) and np.array_equal(np.asarray(turned), np.asarray(Image.open(shown)))
    red_left, blue_right = np.asarray(turned)[20, 5], np.asarray(turned)[20, 66]
    assert red_left[0] > 200 > red_left[2] and blue_right[2] > 200 > blue_right[0]


def test_predict_viz_and_demo_see_the_photo_as_shown(photos):
    tagged, shown = photos
    torch.manual_seed(0)
    model = timm.create_model("litv2_nano", num_classes=4).eval()
    on_tagged, on_shown = (predict(str(p), model, classes=list("abcd"), progress=False)[0] for p in (tagged, shown))
    assert on_tagged["top_k"] == on_shown["top_k"]
    assert torch.equal(load_image(str(tagged), model)[0], load_image(str(shown), model)[0])
    assert decode_image(tagged.read_bytes()).size == (72, 40)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # PIL, when it opens the file
def test_corrupt_or_missing_exif_leaves_the_pixels():
    plain = _upright_picture()
    assert upright(plain) is plain  # no tag: nothing to do, no copy
    buf = io.BytesIO()
    plain.save(buf, "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff")  # a truncated IFD
    buf.seek(0)
    with Image.open(buf) as im:
        assert upright(im).size == (72, 40)


def test_a_large_image_loads_without_pils_warning_and_a_huge_one_is_refused(tmp_path, monkeypatch, recwarn):
    """PIL warns from MAX_IMAGE_PIXELS (89 MP: a panorama) and refuses beyond twice that; scaled down here."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    Image.new("RGB", (12, 12), (9, 8, 7)).save(tmp_path / "large.png")  # 144 px: PIL's warning zone
    Image.new("RGB", (16, 16)).save(tmp_path / "huge.png")  # 256 px: over twice the limit
    assert load_rgb(str(tmp_path / "large.png")).getpixel((0, 0)) == (9, 8, 7)
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]
    with pytest.raises(Image.DecompressionBombError):  # the datasets' bad-image handling names it
        load_rgb(str(tmp_path / "huge.png"))
