"""Pieces every model file uses: checkpoint unwrapping, timm's pretrained-config defaults."""

from typing import Any, Dict

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

LITV2_PAPER = "Fast Vision Transformers with HiLo Attention (NeurIPS 2022), https://arxiv.org/abs/2205.13213"
LIT_PAPER = "Less is More: Pay Less Attention in Vision Transformers (AAAI 2022), https://arxiv.org/abs/2105.14217"
LITV2_RELEASES = "https://github.com/ziplab/LITv2/releases/download/"
LIT_RELEASES = "https://github.com/ziplab/LIT/releases/download/"


def unwrap_state_dict(checkpoint: Any) -> Dict[str, torch.Tensor]:
    """The weights of an official or litvit file: `{'model': sd}`, `{'state_dict': sd}` or a bare state_dict, with
    DataParallel/DDP `module.` prefixes removed."""
    sd = checkpoint
    for key in ("model", "state_dict", "model_ema"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
            break
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(
            "checkpoint holds no state_dict: expected a dict of tensors, or one under 'model' or 'state_dict'"
        )
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in sd.items()}


def cfg(url: str = "", paper: str = LITV2_PAPER, **kwargs) -> Dict[str, Any]:
    """timm pretrained config with the papers' evaluation settings (bicubic, crop 0.875 at 224, ImageNet stats)."""
    return {
        "url": url,
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "fixed_input_size": False,
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "first_conv": "patch_embed.proj",
        "classifier": "head",
        "license": "apache-2.0",
        "paper_ids": paper,
        **kwargs,
    }
