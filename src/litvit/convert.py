"""`litvit convert`: an official (or litvit) checkpoint -> a `.safetensors` file that loads without pickle.

The model is recognised from the file's keys and shapes (or named), the weights are fitted to it exactly as
`timm.create_model(..., pretrained=True)` would fit them (so a file that would not load is refused here, with the
same message), and the result is written atomically with the model's name and keywords in its metadata.
"""

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import timm
import torch

from .checkpoint import CheckpointError, PathLike, identify, read_checkpoint, unwrap_state_dict
from .models.backbones import create_backbone


def convert_checkpoint(
    src: PathLike,
    dst: PathLike,
    model_name: Optional[str] = None,
    backbone: Optional[str] = None,
    **model_kwargs: Any,
) -> Tuple[str, Dict[str, Any]]:
    """Convert `src` to the safetensors file `dst`; returns the model name and keywords written to its metadata.

    `backbone` ('det' or 'seg') converts a dense backbone (mmdet / mmseg or ImageNet files); then `model_name` is
    required. Without `model_name` the released variant is recognised from the weights.
    """
    dst = Path(dst)
    if dst.suffix != ".safetensors":
        raise ValueError(f"the destination must end in .safetensors, got {str(dst)!r}")
    if model_name is None:
        if backbone is not None:
            raise ValueError("converting a dense backbone needs the model name (--model litv2_s, lit_s or lit_ti)")
        found = identify(unwrap_state_dict(read_checkpoint(src)))
        if found is None:
            raise CheckpointError(
                f"{str(src)!r} matches no released LIT / LITv2 variant; name the model with --model (and e.g. --alpha)"
            )
        model_name, kwargs = found
        kwargs = {**kwargs, **model_kwargs}
    else:
        kwargs = dict(model_kwargs)
    if backbone:
        model = create_backbone(model_name, task=backbone, **kwargs)
    else:
        model = timm.create_model(model_name, **kwargs)
    model.load_pretrained(str(src))
    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    metadata = {
        "format": "pt",
        "litvit_model": model_name,
        "litvit_kwargs": json.dumps(kwargs, sort_keys=True),
        "litvit_backbone": backbone or "",
        "source": Path(src).name,
    }
    write_safetensors_atomic(tensors, dst, metadata)
    return model_name, kwargs


def write_safetensors_atomic(tensors: Dict[str, torch.Tensor], dst: PathLike, metadata: Dict[str, str]) -> None:
    """Write to a temporary file in the destination folder, fsync, then rename: `dst` is never half-written."""
    from safetensors.torch import save_file

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
