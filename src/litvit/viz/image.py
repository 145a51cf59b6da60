"""An image as the model sees it: the model's evaluation transform (timm's data config, as `litvit eval` uses),
and the RGB picture of that exact tensor, so that every figure draws its maps on the pixels the model read."""

import os
from typing import Optional, Tuple, Union

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..data.folder import upright
from ..data.transforms import data_config, eval_transform
from ..errors import DataError

__all__ = ["load_image"]


def load_image(
    image: Union[str, os.PathLike, Image.Image], model: nn.Module, img_size: Optional[int] = None
) -> Tuple[torch.Tensor, Image.Image]:
    """(1, 3, H, W) input tensor of `image` (a path or a PIL image) under `model`'s eval transform (resize,
    centre crop, normalise; `img_size` overrides the model's input size), and the RGB PIL image it shows (the
    tensor un-normalised: same H, W). An unreadable file is a DataError naming it."""
    if not isinstance(image, Image.Image):
        try:
            with Image.open(image) as opened:
                image = upright(opened).convert("RGB")  # as a photo viewer shows it (EXIF orientation)
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise DataError(
                f"cannot read image {os.fspath(image)!r} ({str(e).splitlines()[0]}): pass a JPEG / PNG file"
            ) from None
    cfg = data_config(model, img_size)
    x = eval_transform(cfg)(image.convert("RGB")).unsqueeze(0)  # (3, H, W) -> (1, 3, H, W)
    mean = torch.tensor(cfg["mean"]).view(3, 1, 1)
    std = torch.tensor(cfg["std"]).view(3, 1, 1)
    rgb = (x[0] * std + mean).clamp(0, 1).mul(255).round().byte()  # (3, H, W) uint8
    return x, Image.fromarray(np.ascontiguousarray(rgb.permute(1, 2, 0).numpy()))
