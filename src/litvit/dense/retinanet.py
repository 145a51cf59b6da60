"""RetinaNet as the official LIT / LITv2 configs build it (mmdet `retinanet_fpn.py`), on torchvision's RetinaNet.

FPN over stages 2-4 with P6 from C5 and P7 from P6 without ReLU (`fpn.P6P7FromInput`), torchvision's v1 head (4 x
conv3x3 + ReLU per branch, no norm, 9 anchors), mmdet's float anchors on fixed strides 8-128
(`anchors.MMDetAnchorGenerator`), box coder with mmdet's two-sided clamp, at most 100 detections, and mmdet's
candidate selection (`topk_rule`):

* 'anchor' (mmdet 2.11, as the released models were evaluated): per level, the 1000 anchors with the highest
  max-over-classes score, then every (anchor, class) pair scoring > 0.05 of all levels into class-wise NMS 0.5.
* 'pair' (mmdet >= 2.18 / 3.x and torchvision): per level, the 1000 best (anchor, class) pairs scoring > 0.05;
  boxes of zero width or height dropped; then the same NMS.

Labels are 0-based class indices (sigmoid classifier: no background slot). Training losses are torchvision's
(focal + L1, each image normalised by its own positives, mmdet normalises by the batch's positives).
"""

from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torchvision.models.detection.retinanet import RetinaNet, RetinaNetHead
from torchvision.ops import boxes as box_ops

from .anchors import MMDetAnchorGenerator, MMDetBoxCoder
from .fpn import BackboneFPN, P6P7FromInput, stage_channels
from .transform import DetTransform, check_inputs

__all__ = ["LitRetinaNet", "build_retinanet", "TOPK_RULES"]

TOPK_RULES = ("anchor", "pair")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class LitRetinaNet(RetinaNet):
    """torchvision's RetinaNet with mmdet's inference rule (see the module docstring); same calling convention."""

    def __init__(
        self,
        backbone: BackboneFPN,
        num_classes: int,
        min_size: Optional[int] = 800,
        max_size: int = 1333,
        image_mean: Tuple[float, ...] = IMAGENET_MEAN,
        image_std: Tuple[float, ...] = IMAGENET_STD,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
        topk_candidates: int = 1000,
        topk_rule: str = "anchor",
    ):
        if topk_rule not in TOPK_RULES:
            raise ValueError(f"topk_rule must be one of {TOPK_RULES}, got {topk_rule!r}")
        scales = tuple(4 * 2 ** (k / 3) for k in range(3))  # octave_base_scale 4, 3 scales per octave
        anchor_generator = MMDetAnchorGenerator(strides=(8, 16, 32, 64, 128), scales=scales)
        head = RetinaNetHead(backbone.out_channels, 9, num_classes)
        super().__init__(
            backbone,
            num_classes,
            anchor_generator=anchor_generator,
            head=head,
            score_thresh=score_thresh,
            nms_thresh=nms_thresh,
            detections_per_img=detections_per_img,
            topk_candidates=topk_candidates,
        )
        self.num_classes = num_classes
        self.topk_rule = topk_rule
        self.box_coder = MMDetBoxCoder((1.0, 1.0, 1.0, 1.0))
        self.transform = DetTransform(min_size, max_size, image_mean, image_std)

    def forward(self, images: List[Tensor], targets: Optional[List[Dict[str, Tensor]]] = None):
        check_inputs(images, targets, self.num_classes, self.training)
        if len(images) == 0:
            return []  # no images, no detections (torchvision's transform indexes the first)
        return super().forward(images, targets)

    def postprocess_detections(
        self,
        head_outputs: Dict[str, List[Tensor]],
        anchors: List[List[Tensor]],
        image_shapes: List[Tuple[int, int]],
    ) -> List[Dict[str, Tensor]]:
        detections = []
        for i, image_shape in enumerate(image_shapes):
            per_level = [
                self._candidates(logits[i], deltas[i], level_anchors, image_shape)
                for logits, deltas, level_anchors in zip(
                    head_outputs["cls_logits"], head_outputs["bbox_regression"], anchors[i]
                )
            ]
            boxes, scores, labels = (torch.cat(t) for t in zip(*per_level))
            keep = box_ops.batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
            detections.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
        return detections

    def _candidates(
        self, logits: Tensor, deltas: Tensor, anchors: Tensor, image_shape: Tuple[int, int]
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """One level of one image: logits (N, K), deltas (N, 4), anchors (N, 4) -> boxes, scores, labels."""
        scores = logits.sigmoid()
        num_classes = scores.shape[1]
        if self.topk_rule == "anchor" and scores.shape[0] > self.topk_candidates:
            top = scores.max(dim=1).values.topk(self.topk_candidates).indices
            scores, deltas, anchors = scores[top], deltas[top], anchors[top]
        flat = scores.flatten()  # (N * K,) anchor-major, class-minor
        pairs = torch.where(flat > self.score_thresh)[0]
        flat = flat[pairs]
        if self.topk_rule == "pair":
            flat, order = flat.sort(descending=True)
            flat, pairs = flat[: self.topk_candidates], pairs[order[: self.topk_candidates]]
        anchor_idx = torch.div(pairs, num_classes, rounding_mode="floor")
        boxes = self.box_coder.decode_single(deltas[anchor_idx], anchors[anchor_idx])
        boxes = box_ops.clip_boxes_to_image(boxes, image_shape)
        labels = pairs % num_classes
        if self.topk_rule == "pair":  # mmdet >= 2.18: min_bbox_size 0 drops empty boxes
            wh = boxes[:, 2:] - boxes[:, :2]
            valid = (wh > 0).all(dim=1)
            boxes, flat, labels = boxes[valid], flat[valid], labels[valid]
        return boxes, flat, labels


def build_retinanet(body: nn.Module, num_classes: int, fpn_channels: int = 256, **kwargs) -> LitRetinaNet:
    """RetinaNet on `body` (a litvit detection backbone returning stages 2-4); `fpn_channels` is the width of the FPN
    and the head (256 in the official configs; smaller for tests)."""
    in_channels = stage_channels(body)
    extra = P6P7FromInput(in_channels[-1], fpn_channels)
    fpn = BackboneFPN(body, in_channels, fpn_channels, extra_blocks=extra)
    return LitRetinaNet(fpn, num_classes, **kwargs)
