"""Fitting checkpoint weights to a model, and recognising which released variant a checkpoint holds.

These need the models (recognising a file builds each candidate on the meta device), so they live here and
`litvit.checkpoint` stays about files only. Every model's `load_pretrained` goes through `load_into`: a file that
does not fit fails with the list of what does not fit and, when the weights are a known variant, its name.
"""

import json
import logging
import os
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
from torch import nn

from ..checkpoint import (
    NOT_FLOAT,
    PathLike,
    StateDict,
    check_finite,
    mismatch_report,
    read_checkpoint,
    read_metadata,
    strip_prefix,
    unwrap_state_dict,
)
from ..errors import CheckpointError
from ..variants import ALPHA_TAGS, get_variant, released_names

_logger = logging.getLogger(__name__)

# The output norms of the LIT / LITv2 dense backbones: absent from ImageNet files, they keep their initialisation.
OUTPUT_NORMS = ("norm0.", "norm1.", "norm2.", "norm3.")


def load_into(
    model: nn.Module,
    checkpoint: Union[PathLike, Dict[str, Any]],
    filter_fn: Callable[[Dict[str, Any], nn.Module], StateDict],
    ignore_missing: Tuple[str, ...] = (),
) -> None:
    """Fit `checkpoint` (a path or a loaded object) to `model` through its `checkpoint_filter_fn` and load it.

    A classifier head of another size (a checkpoint for 1000 classes into a model for K) is left freshly initialised
    (fine-tuning), with a warning; weights holding NaN or Inf are refused; any other difference raises a
    `CheckpointError` that lists what does not fit and, when the file is a known variant, which one it is.
    """
    is_file = isinstance(checkpoint, (str, os.PathLike))
    source = f"checkpoint {str(checkpoint)}" if is_file else "the given state_dict"
    raw = read_checkpoint(checkpoint) if is_file else checkpoint
    sd = filter_fn(raw, model)
    check_finite(sd, source)
    sd, dropped_head = _adapt_head(model, sd)
    if dropped_head is not None:
        ignore_missing = ignore_missing + ("head.",)
    sd = _adapt_input_conv(model, sd)
    problems = mismatch_report(model, sd, ignore_missing)
    if problems:
        found = identify(unwrap_state_dict(raw))
        saved_as = read_metadata(checkpoint).get("litvit_model") if is_file else None
        if not saved_as and isinstance(raw, dict) and isinstance(raw.get("model_name"), str):
            saved_as = raw["model_name"]  # a litvit training checkpoint
        hint = ""
        if all(p.startswith(NOT_FLOAT) for p in problems):
            hint = " Loading would cast them into wrong weights: use the file as it was saved (float32, fp16 or bf16)."
        elif found is not None:
            hint = f" The checkpoint is {describe(*found)}: create that model instead."
        elif saved_as:
            hint = f" The file says it holds {saved_as}."
        else:
            hint = " Create the model the file was saved from (its variant, options and class count)."
        target = getattr(model, "pretrained_cfg", {}).get("architecture") or type(model).__name__
        if hasattr(model, "alpha"):
            target += f" (alpha={model.alpha})"
        raise CheckpointError(f"{source} does not fit {target}: " + "; ".join(problems) + "." + hint)
    missing = set(model.state_dict()) - set(sd)
    model.load_state_dict(sd, strict=not missing)
    if dropped_head is not None and model.num_classes > 0:  # announced once the rest has loaded
        warnings.warn(
            f"the checkpoint's classifier has {dropped_head} classes and the model {model.num_classes}: the model's "
            f"head is freshly initialised (fine-tuning); create the model with num_classes={dropped_head} to keep "
            "the checkpoint's",
            UserWarning,
            stacklevel=2,
        )


def backbone_weights(sd: StateDict, drop: Tuple[str, ...] = ("head.", "norm.")) -> StateDict:
    """The weights a dense backbone takes from a file: an mmdet / mmseg checkpoint's `backbone.` part, or an
    ImageNet file without its classifier parts (`drop`)."""
    return {k: v for k, v in strip_prefix(sd, "backbone.").items() if not k.startswith(drop)}


def _adapt_head(model: nn.Module, sd: StateDict) -> Tuple[StateDict, Optional[int]]:
    """Drop a checkpoint head made for another class count (or for a model without a head): the model's head stays
    freshly initialised. Returns the state_dict and the dropped head's class count (None: nothing dropped). A head
    of the same class count but another width is kept, for the mismatch report to name (another variant)."""
    weight = sd.get("head.weight")
    if not hasattr(model, "num_classes") or weight is None or weight.dim() != 2:
        return sd, None
    if model.num_classes > 0 and weight.shape[0] == model.num_classes:
        return sd, None
    if model.num_classes == 0:
        _logger.info("the checkpoint's classifier (%s classes) is not used: the model has no head", weight.shape[0])
    return {k: v for k, v in sd.items() if k not in ("head.weight", "head.bias")}, int(weight.shape[0])


def _adapt_input_conv(model: nn.Module, sd: StateDict) -> StateDict:
    """Sum / repeat the RGB patch-embedding weights for a model built with another `in_chans` (timm's rule)."""
    from timm.models import adapt_input_conv

    for name in ("patch_embed.proj.weight", "patch_embed1.proj.weight"):
        own = model.state_dict().get(name)
        if own is not None and name in sd and sd[name].shape[1] != own.shape[1] and sd[name].shape[1] == 3:
            sd = dict(sd)
            sd[name] = adapt_input_conv(own.shape[1], sd[name])
    return sd


def identify(sd: StateDict) -> Optional[Tuple[str, Dict[str, Any]]]:
    """The released variant (timm name, creation keywords) whose state_dict has exactly these keys and shapes."""
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    for name, kwargs in _candidates():
        if _shapes_of(name, json.dumps(kwargs, sort_keys=True)) == shapes:
            return name, kwargs
    return None


def _candidates() -> List[Tuple[str, Dict[str, Any]]]:
    """Every released variant (LITv2 at its default alpha), then LITv2-S at the alphas of its ablation weights."""
    out: List[Tuple[str, Dict[str, Any]]] = []
    for name in released_names():
        out.append((name, {"alpha": 0.9} if get_variant(name).family == "litv2" else {}))
    out += [("litv2_s", {"alpha": a}) for a in sorted(set(ALPHA_TAGS.values())) if a != 0.9]
    return out


_SHAPES_CACHE: Dict[Tuple[str, str], Dict[str, Tuple[int, ...]]] = {}


def _shapes_of(name: str, kwargs_json: str) -> Dict[str, Tuple[int, ...]]:
    key = (name, kwargs_json)
    if key not in _SHAPES_CACHE:
        import timm

        with torch.device("meta"):
            model = timm.create_model(name, **json.loads(kwargs_json))
        _SHAPES_CACHE[key] = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return _SHAPES_CACHE[key]


def describe(name: str, kwargs: Dict[str, Any]) -> str:
    return name + "".join(f", {k}={v}" for k, v in kwargs.items())
