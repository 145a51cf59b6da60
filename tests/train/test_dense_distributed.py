"""Detection and segmentation under a 2-process torchrun on CPU (gloo): the loop's DDP, with each rank's
predictions gathered for COCOeval / the confusion matrices summed, equals a 1-process evaluation of the checkpoint."""

import json

import pytest

from litvit.cli import main
from litvit.data.scenes import write_scenes

from .helpers import torchrun

NANO = ["backbone_kwargs={embed_dim: 16, depths: [1, 1, 1, 1], num_heads: [1, 1, 2, 2]}", "fpn_channels=32"]


@pytest.mark.parametrize(
    "task, data, score, extra",
    [
        pytest.param("det", "coco", "bbox_mAP", ["--max-size", "64"], marks=pytest.mark.needs("pycocotools")),
        ("seg", "ade", "mIoU", ["--max-size", "128"]),
    ],
)
def test_two_process_dense_run(tmp_path, task, data, score, extra):
    scenes = write_scenes(tmp_path / "scenes", size=64, counts=(8, 5))  # 5 val images: an odd split over 2 ranks
    out = tmp_path / "run"
    args = ["--task", task, "--data", str(scenes / data), "--threads", "1", "--epochs", "1", "--batch-size", "2"]
    args += ["--warmup-steps", "1", "--workers", "0", "--no-progress", "--img-size", "64", *extra]
    args += ["--model-kwargs", *NANO, "--output", str(out)]
    result = torchrun("litvit.train", args, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 2 and summary["ranks_in_sync"] is True
    metrics = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert metrics["val_images"] == 5
    assert main(["eval", "--checkpoint", str(out / "last.pth"), "--json", str(tmp_path / "e.json")]) == 0
    single = json.loads((tmp_path / "e.json").read_text())
    assert single["images"] == 5 and single[score] == pytest.approx(metrics[f"val_{score}"], abs=1e-5)
