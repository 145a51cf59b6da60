"""`litvit convert`: an official (or litvit) checkpoint -> a `.safetensors` file that loads without pickle.

The model is recognised from the file's keys and shapes (or named), the weights are fitted to it exactly as
`timm.create_model(..., pretrained=True)` would fit them (so a file that would not load is refused here, with the
same message), and the result is written atomically with the model's name and keywords in its metadata.
"""

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import timm
import torch

from .checkpoint import PathLike, atomic_write, unwrap_state_dict
from .dense import create_dense_model, list_dense_models
from .errors import CheckpointError, CheckpointSaveError, ConfigError
from .models import create_backbone, identify
from .train.checkpoint import is_train_checkpoint, model_of, read_any


def convert_checkpoint(
    src: PathLike,
    dst: PathLike,
    model_name: Optional[str] = None,
    backbone: Optional[str] = None,
    **model_kwargs: Any,
) -> Tuple[str, Dict[str, Any]]:
    """Convert `src` to the safetensors file `dst`; returns the model name and keywords written to its metadata.

    `backbone` ('det' or 'seg') converts a dense backbone (mmdet / mmseg or ImageNet files); then `model_name` is
    required. A dense model name (`litvit.dense.list_dense_models()`, e.g. mask_rcnn_litv2_s) converts a released
    detector / segmenter file whole (its class count read from the file). Without `model_name` the released variant
    is recognised from the weights.
    """
    dst = Path(dst)
    if dst.suffix != ".safetensors":
        raise ConfigError(f"the destination must end in .safetensors, got {str(dst)!r}")
    if model_name is not None and model_name in list_dense_models():  # a whole detector / segmenter
        if backbone is not None:
            raise ConfigError(f"{model_name} is a whole dense model: drop --backbone (it converts a backbone alone)")
        model = create_dense_model(model_name, checkpoint=str(src), **model_kwargs)
        kwargs, classes = {"num_classes": model.num_classes, **model_kwargs}, None
    else:
        model_name, kwargs, classes = _name_and_kwargs(src, model_name, backbone, model_kwargs)
        try:
            model = (
                create_backbone(model_name, task=backbone, **kwargs)
                if backbone
                else timm.create_model(model_name, **kwargs)
            )
        except (ValueError, RuntimeError) as e:  # a bad --model / --alpha: timm says "Unknown model", litvit ValueError
            raise ConfigError(f"cannot build {model_name}: {e}") from e
        model.load_pretrained(str(src))
    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    metadata = {
        "format": "pt",
        "litvit_model": model_name,
        "litvit_kwargs": json.dumps(kwargs, sort_keys=True),
        "litvit_backbone": backbone or "",
        "source": Path(src).name,
    }
    if classes:  # a litvit run's class names, which `litvit predict` shows
        metadata["litvit_classes"] = json.dumps(list(classes))
    write_safetensors_atomic(tensors, dst, metadata)
    return model_name, kwargs


def _name_and_kwargs(
    src: PathLike, model_name: Optional[str], backbone: Optional[str], model_kwargs: Dict[str, Any]
) -> Tuple[str, Dict[str, Any], Optional[List[str]]]:
    """The model to build (as named, a litvit run's own, or the released variant recognised from the weights), and
    the class names where the file has them (a litvit run)."""
    raw = read_any(Path(src))  # a litvit run checkpoint comes back validated
    classes = raw.get("classes") if is_train_checkpoint(raw) else None
    if model_name is not None:
        return model_name, dict(model_kwargs), classes
    if backbone is not None:
        raise ConfigError("converting a dense backbone needs the model name (--model litv2_s, lit_s or lit_ti)")
    if is_train_checkpoint(raw):  # a litvit run names its own model, class count and resolution
        config = raw["config"]
        if config.get("task", "classification") != "classification":
            raise CheckpointError(
                f"{str(src)!r} is a litvit {config['task']} run of {config['model']}: pass --model {config['model']}"
            )
        name, kwargs = model_of(raw)
        return name, {**kwargs, **model_kwargs}, classes
    found = identify(unwrap_state_dict(raw))
    if found is None:
        raise CheckpointError(
            f"{str(src)!r} matches no released LIT / LITv2 variant; name the model with --model (and e.g. --alpha)"
        )
    return found[0], {**found[1], **model_kwargs}, None


def write_safetensors_atomic(tensors: Dict[str, torch.Tensor], dst: PathLike, metadata: Dict[str, str]) -> None:
    """Write `dst` through `checkpoint.atomic_write` (never half-written); a failed write (full disk, permissions)
    raises `CheckpointSaveError`, an OSError with the errno."""
    from safetensors.torch import save_file

    try:
        atomic_write(dst, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    except OSError as e:
        raise CheckpointSaveError(e.errno or 0, f"{e.strerror or e}; a file already there is unchanged") from e
