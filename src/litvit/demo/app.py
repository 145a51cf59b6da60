"""What the demo page shows, as plain functions: the top-5 classes of one image and the four pictures of litvit.viz.

Kept apart from the HTTP server so that every answer the page can get is testable without a socket. Nothing here
raises on a bad upload or a picture a model cannot make (LIT-S has no HiLo, so no frequency curves): the answer
carries the error text in that place instead, and the page shows it there.
"""

import base64
import io
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from PIL import Image
from torch import nn

from ..data.folder import upright
from ..errors import one_line
from ..predict.classes import class_names, top_classes
from ..predict.run import load_predict_model

__all__ = ["PICTURES", "class_names", "decode_image", "load_demo_model", "predict_top5", "render", "render_upload"]

# An upload larger than this many pixels is refused before decoding (PIL warns from ~89 Mpx: decompression bombs).
MAX_PIXELS = 50_000_000

# (key, title) of the four pictures, in the order the page shows them.
PICTURES: Tuple[Tuple[str, str], ...] = (
    ("offsets", "Deformable sampling points"),
    ("frequency", "HiLo frequency curves"),
    ("attention", "Attention map"),
    ("cam", "Grad-CAM"),
)

RANDOM_NOTE = "random weights (no --checkpoint): the classes and pictures show the method, not a trained model"


def load_demo_model(model_name: Optional[str], checkpoint: Optional[str]) -> Tuple[nn.Module, List[str], str, str]:
    """(model in eval mode, its class names, a note for the page, its name). Without a checkpoint the model keeps
    its random initialisation (no download is tried) and the note says so."""
    model, info = load_predict_model(model_name, checkpoint, pretrained=False)
    name = info.get("model_name") or model_name or type(model).__name__
    return model, class_names(model, info), "" if checkpoint else RANDOM_NOTE, name


def decode_image(data: bytes) -> Image.Image:
    """The uploaded bytes as an RGB image, or a ValueError with a one-line reason."""
    if not data:
        raise ValueError("empty upload: choose an image file")
    try:
        img = Image.open(io.BytesIO(data))
        if img.width * img.height > MAX_PIXELS:
            raise ValueError(f"image too large ({img.width} x {img.height} pixels; at most {MAX_PIXELS:,})")
        img.load()
        return upright(img).convert("RGB")  # as the browser shows it (EXIF orientation)
    except ValueError:
        raise
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, DecompressionBombError ...
        raise ValueError(f"not an image PIL can read ({one_line(e)}): upload a PNG, JPEG, WebP, BMP or GIF") from None


def predict_top5(model: nn.Module, pil: Image.Image, labels: Sequence[str]) -> List[Tuple[str, float]]:
    """The (up to) five most probable classes of `pil`, most probable first, under the model's eval transform."""
    from ..data.transforms import data_config, eval_transform

    x = eval_transform(data_config(model))(pil.convert("RGB")).unsqueeze(0)  # (1, 3, H, W)
    return [(name, prob) for name, _index, prob in top_classes(model.eval(), x, labels, 5)[0]]


def _figure_png(fig: Any) -> str:
    """A matplotlib Figure as a base64 PNG (closed afterwards: a server renders many)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _painters(model: nn.Module, pil: Image.Image) -> Dict[str, Callable[[], Any]]:
    """Each picture as a function returning its Figure (litvit.viz is imported here, on first use)."""
    from ..viz import attention, cam, frequency, load_image, offsets
    from ..viz.plot import attention_figure, cam_figure, frequency_figure, offsets_figure

    x, shown = load_image(pil, model)

    def grad_cam() -> Any:
        heat, _index = cam(model, x)
        return cam_figure(heat, shown)

    return {
        "offsets": lambda: offsets_figure(offsets(model, x), shown),
        "frequency": lambda: frequency_figure(frequency(model, x)),
        "attention": lambda: attention_figure(attention(model, x), shown),
        "cam": grad_cam,
    }


def render(model: nn.Module, pil: Image.Image, labels: Sequence[str]) -> Dict[str, Any]:
    """Everything the page shows for one image: {'top5': [{name, prob}], 'pictures': [{key, title, png | error}],
    'seconds'}; a picture that fails has its one-line error in place of its PNG, and the others stay."""
    start = time.perf_counter()
    pil = pil.convert("RGB")
    out: Dict[str, Any] = {"top5": [{"name": n, "prob": p} for n, p in predict_top5(model, pil, labels)]}
    try:
        painters: Dict[str, Callable[[], Any]] = _painters(model, pil)
        setup_error = ""
    except Exception as e:  # litvit.viz missing, or an input it cannot take: every picture says why
        painters, setup_error = {}, one_line(e)
    pictures = []
    for key, title in PICTURES:
        entry: Dict[str, Any] = {"key": key, "title": title, "png": None, "error": None}
        try:
            if setup_error:
                raise RuntimeError(setup_error)
            entry["png"] = _figure_png(painters[key]())
        except Exception as e:
            entry["error"] = one_line(e)
        pictures.append(entry)
    model.zero_grad(set_to_none=True)  # Grad-CAM leaves gradients behind
    out["pictures"] = pictures
    out["seconds"] = round(time.perf_counter() - start, 2)
    return out


def render_upload(model: nn.Module, data: bytes, labels: Sequence[str]) -> Dict[str, Any]:
    """`render` of uploaded bytes; an unreadable image (or any failure) gives {'error': one line}, never raises."""
    try:
        return render(model, decode_image(data), labels)
    except Exception as e:
        return {"error": one_line(e)}
