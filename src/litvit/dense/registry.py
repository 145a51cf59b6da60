"""`create_dense_model("retinanet_litv2_s", num_classes)`: the papers' detectors and segmenter by name.

Names are `{arch}_{backbone}`: arch is retinanet, mask_rcnn, faster_rcnn (detection backbone, COCO's 80 classes by
default) or semantic_fpn (segmentation backbone, ADE20K's 150); backbone is any litvit dense backbone
(`litvit.models.BACKBONES`), and for the detectors also `litv2_{s,m,b}_ws4`, the released variants whose stage-3
HiLo window is 4 (`local_ws=(0, 0, 4, 1)`).
"""

from typing import Any, Callable, Dict, List, Optional, Tuple

from torch import nn

from ..errors import ConfigError
from ..models.backbones import BACKBONES, create_backbone
from ..variants import get_variant
from .official import infer_num_classes, load_dense_checkpoint
from .rcnn import build_rcnn
from .retinanet import build_retinanet
from .semantic_fpn import build_semantic_fpn

__all__ = ["ARCHS", "create_dense_model", "list_dense_models"]

# arch -> (backbone task, backbone stages it feeds to the FPN, default class count, builder)
ARCHS: Dict[str, Tuple[str, Tuple[int, ...], int, Callable[..., nn.Module]]] = {
    "retinanet": ("det", (1, 2, 3), 80, build_retinanet),
    "mask_rcnn": ("det", (0, 1, 2, 3), 80, lambda body, k, **kw: build_rcnn(body, k, with_mask=True, **kw)),
    "faster_rcnn": ("det", (0, 1, 2, 3), 80, lambda body, k, **kw: build_rcnn(body, k, with_mask=False, **kw)),
    "semantic_fpn": ("seg", (0, 1, 2, 3), 150, build_semantic_fpn),
}
WS4 = "_ws4"


def list_dense_models() -> List[str]:
    """Every name `create_dense_model` accepts."""
    names = []
    for arch, (task, _, _, _) in ARCHS.items():
        for backbone in BACKBONES:
            names.append(f"{arch}_{backbone}")
            if task == "det" and get_variant(backbone).family == "litv2":
                names.append(f"{arch}_{backbone}{WS4}")
    return names


def parse_name(name: str) -> Tuple[str, str, Dict[str, Any]]:
    """'mask_rcnn_litv2_s_ws4' -> ('mask_rcnn', 'litv2_s', {'local_ws': (0, 0, 4, 1)})."""
    if name not in list_dense_models():
        raise ConfigError(
            f"unknown dense model {name!r}: names are {{arch}}_{{backbone}} with arch one of {', '.join(ARCHS)} and "
            f"backbone one of {', '.join(BACKBONES)} (litv2 detectors also _ws4); see litvit.dense.list_dense_models()"
        )
    arch = next(a for a in ARCHS if name.startswith(a + "_"))
    backbone = name[len(arch) + 1 :]
    if backbone.endswith(WS4):
        return arch, backbone[: -len(WS4)], {"local_ws": (0, 0, 4, 1)}
    return arch, backbone, {}


def create_dense_model(
    name: str,
    num_classes: Optional[int] = None,
    *,
    checkpoint: Optional[str] = None,
    pretrained_backbone: Optional[str] = None,
    backbone_kwargs: Optional[Dict[str, Any]] = None,
    **kwargs: Any,
) -> nn.Module:
    """Build dense model `name` (see the module docstring).

    num_classes: foreground classes (default: the checkpoint's, else 80 for detectors, 150 for Semantic FPN).
    checkpoint: an official mmdet / mmseg file (released LIT / LITv2 models) or a litvit one, loaded whole.
    pretrained_backbone: ImageNet weights (official or litvit) for the backbone alone, e.g. to start training.
    backbone_kwargs: override the backbone's architecture (tiny test configs: depths, embed_dim, ...).
    kwargs: the arch's options, e.g. min_size / max_size (None: no resize), topk_rule (RetinaNet), mask_paste.
    """
    arch, backbone, ws_kwargs = parse_name(name)
    task, stages, default_classes, build = ARCHS[arch]
    if num_classes is None:
        num_classes = infer_num_classes(checkpoint, arch) if checkpoint else default_classes
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    try:
        body = create_backbone(backbone, task=task, out_indices=stages, **{**ws_kwargs, **(backbone_kwargs or {})})
        model = build(body, num_classes, **kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"cannot build {name}: {e}") from e
    if pretrained_backbone is not None:
        body.load_pretrained(pretrained_backbone)
    if checkpoint is not None:
        load_dense_checkpoint(model, checkpoint, arch)
    return model
