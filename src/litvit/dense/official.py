"""Released LIT / LITv2 dense checkpoints (mmdet / mmseg layout, spec DENSE.md section 4) -> litvit's models.

Every tensor of an official file has one place: `from_official` renames each key (and moves mmdet's background class
from the last row of the box classifier to torchvision's row 0, adds the unused background rows of the class-specific
box regressor and mask logits as zeros); whatever is left over or missing is reported by name, never dropped.
"""

import re
from typing import Any, Dict, List, Tuple, Union

import torch
from torch import nn

from ..checkpoint import PathLike, StateDict, check_finite, load_exactly, read_checkpoint, unwrap_state_dict
from ..errors import CheckpointError

__all__ = ["from_official", "infer_num_classes", "is_official", "load_dense_checkpoint"]

# (pattern, replacement) applied in order, first match wins; `{P6}` / `{P7}` are resolved per file.
_COMMON: List[Tuple[str, str]] = [
    (r"^backbone\.", "backbone.body."),
    (r"^neck\.lateral_convs\.(\d+)\.conv\.", r"backbone.fpn.inner_blocks.\1.0."),
]
_RULES: Dict[str, List[Tuple[str, str]]] = {
    "retinanet": [
        (r"^bbox_head\.cls_convs\.(\d+)\.conv\.", r"head.classification_head.conv.\1.0."),
        (r"^bbox_head\.reg_convs\.(\d+)\.conv\.", r"head.regression_head.conv.\1.0."),
        (r"^bbox_head\.retina_cls\.", "head.classification_head.cls_logits."),
        (r"^bbox_head\.retina_reg\.", "head.regression_head.bbox_reg."),
    ],
    "rcnn": [
        (r"^rpn_head\.rpn_conv\.", "rpn.head.conv.0.0."),
        (r"^rpn_head\.rpn_cls\.", "rpn.head.cls_logits."),
        (r"^rpn_head\.rpn_reg\.", "rpn.head.bbox_pred."),
        (r"^roi_head\.bbox_head\.shared_fcs\.0\.", "roi_heads.box_head.fc6."),
        (r"^roi_head\.bbox_head\.shared_fcs\.1\.", "roi_heads.box_head.fc7."),
        (r"^roi_head\.bbox_head\.fc_cls\.", "roi_heads.box_predictor.cls_score."),
        (r"^roi_head\.bbox_head\.fc_reg\.", "roi_heads.box_predictor.bbox_pred."),
        (r"^roi_head\.mask_head\.convs\.(\d+)\.conv\.", r"roi_heads.mask_head.\1.0."),
        (r"^roi_head\.mask_head\.upsample\.", "roi_heads.mask_predictor.conv5_mask."),
        (r"^roi_head\.mask_head\.conv_logits\.", "roi_heads.mask_predictor.mask_fcn_logits."),
    ],
    "semantic_fpn": [
        (r"^decode_head\.scale_heads\.(\d+)\.(\d+)\.conv\.", r"decode_head.scale_heads.\1.\2.0."),
        (r"^decode_head\.scale_heads\.(\d+)\.(\d+)\.bn\.", r"decode_head.scale_heads.\1.\2.1."),
        (r"^decode_head\.conv_seg\.", "decode_head.conv_seg."),
    ],
}
_FAMILY = {"retinanet": "retinanet", "mask_rcnn": "rcnn", "faster_rcnn": "rcnn", "semantic_fpn": "semantic_fpn"}
# arch -> (classifier weight key in the official / litvit layout, rows per class, background rows)
_CLASSIFIER = {
    "retinanet": ("bbox_head.retina_cls.weight", "head.classification_head.cls_logits.weight", 9, 0),
    "rcnn": ("roi_head.bbox_head.fc_cls.weight", "roi_heads.box_predictor.cls_score.weight", 1, 1),
    "semantic_fpn": ("decode_head.conv_seg.weight", "decode_head.conv_seg.weight", 1, 0),
}


def is_official(sd: StateDict) -> bool:
    """mmdet / mmseg layout: a `neck.` (FPN) and a backbone under `backbone.` without torchvision's `body.`."""
    return any(k.startswith("neck.") for k in sd)


def _fpn_rules(sd: StateDict) -> List[Tuple[str, str]]:
    """fpn_convs.i -> layer_blocks.i for the levels with a lateral; the next two are RetinaNet's P6 / P7 convs."""
    n = len({k.split(".")[2] for k in sd if k.startswith("neck.lateral_convs.")})
    return [
        (rf"^neck\.fpn_convs\.({'|'.join(str(i) for i in range(n))})\.conv\.", r"backbone.fpn.layer_blocks.\1.0."),
        (rf"^neck\.fpn_convs\.{n}\.conv\.", "backbone.fpn.extra_blocks.p6."),
        (rf"^neck\.fpn_convs\.{n + 1}\.conv\.", "backbone.fpn.extra_blocks.p7."),
    ]


def from_official(sd: StateDict, arch: str) -> StateDict:
    """An official state_dict (mmdet / mmseg keys) -> litvit keys and layouts for `arch`; unknown keys kept as
    they are (so that the mismatch report names them)."""
    family = _FAMILY[arch]
    rules = _COMMON + _fpn_rules(sd) + _RULES[family]
    out: StateDict = {}
    for key, value in sd.items():
        new = key
        for pattern, repl in rules:
            new, hits = re.subn(pattern, repl, key)
            if hits:
                break
        out[new] = _relayout(new, value) if family == "rcnn" else value
    return out


def _relayout(key: str, value: torch.Tensor) -> torch.Tensor:
    """mmdet's class layouts -> torchvision's: background row last -> first in the classifier; a zero background
    slot before the class-specific regressor (4 rows) and mask logits (1 channel)."""
    if key.startswith("roi_heads.box_predictor.cls_score."):
        return torch.cat([value[-1:], value[:-1]])
    if key.startswith("roi_heads.box_predictor.bbox_pred."):
        return torch.cat([value.new_zeros((4, *value.shape[1:])), value])
    if key.startswith("roi_heads.mask_predictor.mask_fcn_logits."):
        return torch.cat([value.new_zeros((1, *value.shape[1:])), value])
    return value


def _read(checkpoint: Union[PathLike, Dict[str, Any]]) -> StateDict:
    return unwrap_state_dict(read_checkpoint(checkpoint) if not isinstance(checkpoint, dict) else checkpoint)


def infer_num_classes(checkpoint: Union[PathLike, Dict[str, Any]], arch: str) -> int:
    """The foreground class count a dense checkpoint (official or litvit layout) was trained for."""
    sd = _read(checkpoint)
    official_key, litvit_key, per_class, background = _CLASSIFIER[_FAMILY[arch]]
    official = is_official(sd)
    key = official_key if official else litvit_key
    if key not in sd:
        held = [a for a, f in _FAMILY.items() if _CLASSIFIER[f][0 if official else 1] in sd]
        hint = f" (it holds a {' / '.join(held)} model)" if held else ""
        raise CheckpointError(f"the checkpoint has no {key!r}: it does not hold a {arch} model{hint}")
    return int(sd[key].shape[0]) // per_class - background


def load_dense_checkpoint(model: nn.Module, checkpoint: Union[PathLike, Dict[str, Any]], arch: str) -> None:
    """Load an official (mmdet / mmseg) or litvit dense checkpoint into `model` (built for `arch`), strictly:
    a key left over, missing or of another shape raises a `CheckpointError` naming them."""
    source = f"checkpoint {checkpoint}" if not isinstance(checkpoint, dict) else "the given state_dict"
    sd = _read(checkpoint)
    if is_official(sd):
        sd = from_official(sd, arch)
    check_finite(sd, source)
    load_exactly(
        model,
        sd,
        f"{source} does not fit {arch} with this backbone and class count",
        "Name the model the file was trained as (e.g. mask_rcnn_litv2_s) and leave num_classes unset",
    )
