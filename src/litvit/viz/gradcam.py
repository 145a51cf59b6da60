"""Which image regions a class score depends on: Grad-CAM (pytorch-grad-cam) on the last stage's token map.

pytorch-grad-cam expects NCHW activations; litvit maps are channels-last (B, H, W, C), and LIT-Ti's last stage is
a token sequence with a class token first, so a reshape transform turns either into (B, C, H, W) for the map size of
this input (any size the model runs at). The layer explained is the first norm of the last block: its gradient
reaches every token through the last attention (at the final norm, LIT-Ti's class-token pooling would give the
grid tokens no gradient at all). pytorch-grad-cam hooks the layer itself and removes its hooks on exit.
"""

from typing import Callable, Optional, Tuple

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..models._pyramid import stage_grid_sizes
from ._model import evaluating, model_input, patch_stride

__all__ = ["cam", "cam_layer", "nhwc_reshape"]


def cam_layer(model: nn.Module) -> nn.Module:
    """The layer Grad-CAM explains: norm1 of the last block (norm2 if that block has no attention)."""
    blocks = getattr(model, "block4", None)  # LIT-Ti
    if blocks is None and hasattr(model, "layers"):
        blocks = model.layers[-1].blocks
    if blocks is None or len(blocks) == 0:
        raise ConfigError(
            f"{type(model).__name__} is not a LIT, LIT-Ti or LITv2 classifier: cam cannot find its blocks"
        )
    last = blocks[-1]
    return getattr(last, "norm1", None) or last.norm2


def nhwc_reshape(grid: Tuple[int, int]) -> Callable[[torch.Tensor], torch.Tensor]:
    """A pytorch-grad-cam reshape transform: (B, h, w, C) maps, or (B, [1 +] h * w, C) tokens with an optional
    class token first, -> (B, C, h, w)."""

    def transform(t: torch.Tensor) -> torch.Tensor:
        if t.dim() == 3:
            t = t[:, t.shape[1] - grid[0] * grid[1] :].reshape(t.shape[0], grid[0], grid[1], t.shape[2])
        return t.permute(0, 3, 1, 2)  # (B, h, w, C) -> (B, C, h, w)

    return transform


def cam(model: nn.Module, x: torch.Tensor, target: Optional[int] = None) -> Tuple[np.ndarray, int]:
    """Grad-CAM of image `x` (1, 3, H, W) (the first image if a batch) for class `target` (default: the model's
    top-1). Returns (heat (H, W) in [0, 1], the class explained)."""
    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        raise ConfigError("cam needs pytorch-grad-cam: pip install 'litvit[viz]'") from None

    x = model_input(model, x)[:1]
    num_classes = getattr(model, "num_classes", 0)
    if not num_classes:
        raise ConfigError("cam explains a class score: the model has no classifier head (num_classes 0)")
    with evaluating(model):
        if target is None:
            with torch.no_grad():
                target = int(model(x).argmax(dim=-1)[0])
        if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or not 0 <= target < num_classes:
            raise ConfigError(f"target must be a class index in 0..{num_classes - 1}, got {target!r}")
        stages = stage_grid_sizes(tuple(x.shape[-2:]), patch_stride(model), getattr(model, "num_stages", 4))
        with GradCAM(model, [cam_layer(model)], reshape_transform=nhwc_reshape(stages[-1])) as grad_cam:
            heat = grad_cam(input_tensor=x, targets=[ClassifierOutputTarget(int(target))])[0]
    return np.clip(np.nan_to_num(heat.astype(np.float32)), 0.0, 1.0), int(target)
