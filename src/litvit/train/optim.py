"""The official parameter groups, handed to timm's optimizer factory as its `param_group_fn`."""

from typing import Any, Callable, Dict, List

from torch import nn


def official_param_groups(
    weight_decay: float, lr: float, offset_lr_mult: float = 0.01
) -> Callable[[nn.Module], List[Dict[str, Any]]]:
    """Groups of the official LIT / LITv2 trainers (spec section 8):

    1. decay: parameters with more than one dimension, except (3);
    2. no decay: 1-D parameters (norms, BatchNorm), every `.bias`, the names in `model.no_weight_decay()` (e.g.
       LIT-Ti's `cls_token`) and names containing a `model.no_weight_decay_keywords()` keyword (LIT's
       `relative_position_bias_table`);
    3. offsets: the deformable token merges' `conv_offset` weights, at lr x `offset_lr_mult`, with weight decay.
    """

    def make(model: nn.Module) -> List[Dict[str, Any]]:
        skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
        keywords = set(model.no_weight_decay_keywords()) if hasattr(model, "no_weight_decay_keywords") else set()
        decay, no_decay, offset = [], [], []
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            if param.ndim <= 1 or name.endswith(".bias") or name in skip or any(k in name for k in keywords):
                no_decay.append(param)
            elif "conv_offset" in name:
                offset.append(param)
            else:
                decay.append(param)
        groups: List[Dict[str, Any]] = [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        if offset:
            groups.append({"params": offset, "weight_decay": weight_decay, "lr": lr * offset_lr_mult})
        return [g for g in groups if g["params"]]

    return make


def mmcv_param_groups(
    weight_decay: float, lr: float, offset_lr_mult: float = 1.0, no_decay_norm: bool = False
) -> Callable[[nn.Module], List[Dict[str, Any]]]:
    """Groups of the official dense trainers (mmcv's optimizer constructor, spec/DENSE.md section 3.3): every
    parameter decayed, except, with `no_decay_norm` (LITv2 Mask R-CNN's `custom_keys={'norm': decay_mult 0}`),
    those whose name contains 'norm'; biases are decayed. `offset_lr_mult` (1 in those recipes: mmcv does not read
    the offsets' lr_mult) scales the deformable offset convs' lr."""

    def make(model: nn.Module) -> List[Dict[str, Any]]:
        decay, no_decay, offset = [], [], []
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            if no_decay_norm and "norm" in name:
                no_decay.append(param)
            elif "conv_offset" in name and offset_lr_mult != 1.0:
                offset.append(param)
            else:
                decay.append(param)
        groups: List[Dict[str, Any]] = [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
            {"params": offset, "weight_decay": weight_decay, "lr": lr * offset_lr_mult},
        ]
        return [g for g in groups if g["params"]]

    return make
