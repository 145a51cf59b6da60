"""A detection / segmentation run killed with SIGKILL in the middle of an epoch and resumed ends with the same
weights, optimizer state and metrics as the same run left alone (deterministic CPU mode), as for classification:
the loop, not the task, makes resume exact."""

import pytest

from litvit.data.scenes import write_scenes

from .helpers import assert_same_runs, kill_then_resume

NANO = ["backbone_kwargs={embed_dim: 16, depths: [1, 1, 1, 1], num_heads: [1, 1, 2, 2]}", "fpn_channels=32"]
# Random parts on: shuffling, flips and (seg) rescale / crop / photometric distortion in the loader worker, the
# R-CNN samplers (torch) in the model, warmup + cosine.
RECIPE = ["--threads", "1", "--epochs", "2", "--batch-size", "2", "--workers", "1", "--deterministic", "--seed", "3"]
RECIPE += ["--warmup-steps", "2", "--sched", "cosine", "--hflip", "0.5", "--img-size", "64", "--no-progress"]
RECIPE += ["--model-kwargs", *NANO]
SEG = ["--photometric", "--ratio-range", "0.5", "2.0"]
RCNN = ["--model-kwargs", *NANO, "box_fc_channels=64", "mask_channels=32"]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return write_scenes(tmp_path_factory.mktemp("scenes"), size=64, counts=(8, 2))


@pytest.mark.parametrize(
    "task, model, data, extra, keys",
    [
        pytest.param(
            *("det", "mask_rcnn_litv2_s", "coco", ["--max-size", "64", *RCNN], ("val_bbox_mAP", "val_segm_mAP")),
            marks=pytest.mark.needs("pycocotools"),
        ),
        ("seg", "semantic_fpn_litv2_s", "ade", ["--max-size", "128", *SEG], ("val_mIoU", "val_loss")),
    ],
)
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path, scenes, task, model, data, extra, keys):
    args = ["--task", task, "--model", model, "--data", str(scenes / data), *RECIPE, *extra]
    interrupted = kill_then_resume(args, tmp_path, "(epoch 2, step 1/4", save_every=1, timeout=300)
    assert interrupted["epoch"] == 1 and interrupted["batch"] in (1, 2, 3)
    assert_same_runs(tmp_path / "a", tmp_path / "b", 8, keys)
