"""Faster / Mask R-CNN as the official LIT / LITv2 configs build them (mmdet `mask_rcnn_fpn.py`), on torchvision.

FPN P2-P5 + max-pool P6, torchvision's v1 heads (1-conv RPN head, two-FC box head, 4-conv mask head, no norms),
mmdet's anchors (sizes 32-512 on fixed strides 4-64, float), box coders with the two-sided clamp, RPN proposals
(per level: 1000 (test) / 2000 (train) best, NMS 0.7, 1000 kept in both modes, no minimum size), RoIAlign
aligned=True with adaptive sampling and mmdet's level rule (`LevelRoIAlign`), 100 detections after class-wise NMS
0.5 with no minimum box size, and mmdet's mask paste (`transform.paste_masks`).

Labels in and out are 0-based class indices: torchvision's background slot 0 stays inside the model.
Training uses torchvision's losses and samplers (smooth-L1, low-quality RPN matches at any IoU: see docs/dense.md).
"""

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import boxes as box_ops
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from .anchors import MMDetAnchorGenerator, MMDetBoxCoder
from .fpn import BackboneFPN, stage_channels
from .retinanet import IMAGENET_MEAN, IMAGENET_STD
from .roi_align import LevelRoIAlign
from .transform import DetTransform, check_inputs

__all__ = ["LitRCNN", "build_rcnn"]

RCNN_REG_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # 1 / mmdet's target_stds (0.1, 0.1, 0.2, 0.2)


class MMDetRoIHeads(RoIHeads):
    """torchvision's RoI heads whose test-time selection is mmdet's: softmax, class-specific boxes clipped to the
    image, (box, class) pairs scoring > score_thresh, class-wise NMS, the best `detections_per_img` (no minimum box
    size: torchvision drops boxes under 0.01 px)."""

    def postprocess_detections(
        self,
        class_logits: Tensor,
        box_regression: Tensor,
        proposals: List[Tensor],
        image_shapes: List[Tuple[int, int]],
    ) -> Tuple[List[Tensor], List[Tensor], List[Tensor]]:
        num_classes = class_logits.shape[-1]
        counts = [p.shape[0] for p in proposals]
        all_boxes = self.box_coder.decode(box_regression, proposals).split(counts)  # (K_i, num_classes, 4)
        all_scores = F.softmax(class_logits, -1).split(counts)
        out_boxes, out_scores, out_labels = [], [], []
        for boxes, scores, image_shape in zip(all_boxes, all_scores, image_shapes):
            boxes = box_ops.clip_boxes_to_image(boxes, image_shape)[:, 1:].reshape(-1, 4)  # background dropped
            labels = torch.arange(1, num_classes, device=scores.device).expand(scores.shape[0], -1).reshape(-1)
            scores = scores[:, 1:].reshape(-1)
            keep = torch.where(scores > self.score_thresh)[0]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = box_ops.batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
            out_boxes.append(boxes[keep])
            out_scores.append(scores[keep])
            out_labels.append(labels[keep])
        return out_boxes, out_scores, out_labels


class LitRCNN(GeneralizedRCNN):
    """torchvision's GeneralizedRCNN (transform, backbone + FPN, RPN, RoI heads) with 0-based labels in and out."""

    def __init__(
        self, backbone: BackboneFPN, rpn: nn.Module, roi_heads: nn.Module, transform: nn.Module, num_classes: int
    ):
        super().__init__(backbone, rpn, roi_heads, transform)
        self.num_classes = num_classes

    def forward(self, images: List[Tensor], targets: Optional[List[Dict[str, Tensor]]] = None):
        check_inputs(images, targets, self.num_classes, self.training)
        if len(images) == 0:
            return []  # no images, no detections (torchvision's transform indexes the first)
        if targets is not None:  # 0-based classes -> torchvision's 1-based (0 = background)
            targets = [{**t, "labels": t["labels"] + 1} if "labels" in t else t for t in targets]
        out = super().forward(images, targets)
        if self.training:
            return out
        return [{**d, "labels": d["labels"] - 1} for d in out]


def build_rcnn(
    body: nn.Module,
    num_classes: int,
    with_mask: bool = True,
    fpn_channels: int = 256,
    box_fc_channels: int = 1024,
    mask_channels: int = 256,
    min_size: Optional[int] = 800,
    max_size: int = 1333,
    image_mean: Tuple[float, ...] = IMAGENET_MEAN,
    image_std: Tuple[float, ...] = IMAGENET_STD,
    mask_paste: str = "mmdet",
    rpn_pre_nms_top_n_train: int = 2000,
    rpn_pre_nms_top_n_test: int = 1000,
    rpn_post_nms_top_n_train: int = 1000,
    rpn_post_nms_top_n_test: int = 1000,
    rpn_drop_empty: bool = False,
    box_score_thresh: float = 0.05,
    box_nms_thresh: float = 0.5,
    box_detections_per_img: int = 100,
) -> LitRCNN:
    """Mask R-CNN (`with_mask`) or Faster R-CNN on `body` (a litvit detection backbone returning stages 1-4).

    The widths (FPN and RPN `fpn_channels`, box head `box_fc_channels`, mask head `mask_channels`) are the official
    ones by default; smaller ones make test models. `rpn_drop_empty` drops proposals of zero width or height before
    the RPN's NMS (mmdet >= 2.18 / 3.x; mmdet 2.11, which evaluated the released models, keeps them). The rest are
    torchvision's keywords at mmdet's values.
    """
    fpn = BackboneFPN(body, stage_channels(body), fpn_channels, extra_blocks=LastLevelMaxPool())
    width = fpn.out_channels
    rpn = RegionProposalNetwork(
        MMDetAnchorGenerator(strides=(4, 8, 16, 32, 64), scales=(8.0,)),
        RPNHead(width, 3),
        fg_iou_thresh=0.7,
        bg_iou_thresh=0.3,
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_top_n=dict(training=rpn_pre_nms_top_n_train, testing=rpn_pre_nms_top_n_test),
        post_nms_top_n=dict(training=rpn_post_nms_top_n_train, testing=rpn_post_nms_top_n_test),
        nms_thresh=0.7,
    )
    rpn.box_coder = MMDetBoxCoder((1.0, 1.0, 1.0, 1.0))
    # torchvision drops proposals under 1e-3 px; mmdet 2.11 (min_bbox_size 0) keeps every proposal, mmdet 3.x drops
    # those of zero width / height (w > 0 and h > 0 <=> w, h >= the smallest normal float).
    rpn.min_size = torch.finfo(torch.float32).tiny if rpn_drop_empty else 0.0
    masks = {}
    if with_mask:
        masks = dict(
            mask_roi_pool=LevelRoIAlign(14),
            mask_head=MaskRCNNHeads(width, [mask_channels] * 4, 1),
            mask_predictor=MaskRCNNPredictor(mask_channels, mask_channels, num_classes + 1),
        )
    roi_heads = MMDetRoIHeads(
        LevelRoIAlign(7),
        TwoMLPHead(width * 7 * 7, box_fc_channels),
        FastRCNNPredictor(box_fc_channels, num_classes + 1),
        fg_iou_thresh=0.5,
        bg_iou_thresh=0.5,
        batch_size_per_image=512,
        positive_fraction=0.25,
        bbox_reg_weights=RCNN_REG_WEIGHTS,
        score_thresh=box_score_thresh,
        nms_thresh=box_nms_thresh,
        detections_per_img=box_detections_per_img,
        **masks,
    )
    roi_heads.box_coder = MMDetBoxCoder(RCNN_REG_WEIGHTS)
    transform = DetTransform(min_size, max_size, image_mean, image_std, mask_paste=mask_paste)
    return LitRCNN(fpn, rpn, roi_heads, transform, num_classes)
