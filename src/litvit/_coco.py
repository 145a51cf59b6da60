"""pycocotools, imported on first use with a one-line error naming the extra that installs it.

COCO's own evaluation (`COCOeval`) is the reference every detection paper reports, and its mask API decodes COCO's
polygons and run-length encodings; both come from pycocotools (the `dense` extra)."""

from typing import Any

from .errors import ConfigError

__all__ = ["coco_api", "mask_api"]

_HINT = "detection needs pycocotools (COCO masks and mAP): pip install 'litvit[dense]'"


def mask_api() -> Any:
    try:
        import pycocotools.mask as mask
    except ImportError:
        raise ConfigError(_HINT) from None
    return mask


def coco_api() -> Any:
    """(COCO, COCOeval) classes."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise ConfigError(_HINT) from None
    return COCO, COCOeval
