"""What a classifier's outputs mean: the name of each class, and the k most probable classes of a batch.

Shared by `litvit predict` and the demo page, so that both name classes alike: a litvit run's stored class names,
ImageNet-1k's (from timm, no download) for a 1000-class model such as the released weights, else 'class i'.
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..runtime import autocast

__all__ = ["Guess", "class_names", "top_classes"]

# (class name, class index, probability)
Guess = Tuple[str, int, float]


def class_names(model: nn.Module, info: Optional[Dict[str, Any]] = None) -> List[str]:
    """The name of each output of `model`: a litvit run's stored classes (`info['classes']`, as `load_eval_model`
    returns them), ImageNet-1k's for 1000 outputs, else 'class i'."""
    n = int(getattr(model, "num_classes", 0) or 0)
    stored = (info or {}).get("classes")
    if stored and len(stored) == n:
        return [str(c) for c in stored]
    if n == 1000:
        from timm.data import ImageNetInfo

        names = ImageNetInfo()
        return [names.index_to_description(i) for i in range(n)]
    return [f"class {i}" for i in range(n)]


@torch.no_grad()
def top_classes(
    model: nn.Module, x: torch.Tensor, labels: Sequence[str], k: int, amp: Optional[torch.dtype] = None
) -> List[List[Guess]]:
    """The (up to) `k` most probable classes of each image of `x` (B, 3, H, W), most probable first.

    The softmax is taken in fp32 whatever the autocast dtype, so that the probabilities of one image sum to 1 to
    rounding and their order does not depend on the precision more than the logits do.
    """
    param = next(model.parameters(), None)
    if param is not None:
        x = x.to(param.device)
    with autocast(x.device, amp):
        logits = model(x)
    probs = logits.float().softmax(-1)  # (B, num_classes)
    top = probs.topk(min(k, probs.shape[-1]), dim=-1)
    return [
        [(labels[i], i, p) for p, i in zip(values, indices)]
        for values, indices in zip(top.values.tolist(), top.indices.tolist())
    ]
