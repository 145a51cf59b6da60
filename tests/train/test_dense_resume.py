"""A detection / segmentation run killed with SIGKILL in the middle of an epoch and resumed ends with the same
weights, optimizer state and metrics as the same run left alone (deterministic CPU mode), as for classification:
the loop, not the task, makes resume exact."""

import json
import os
import signal
import subprocess
import sys

import pytest

from litvit.data.scenes import write_scenes

from .helpers import assert_same_tensors, env, load, optimizer_tensors, run_module

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
        ("det", "mask_rcnn_litv2_s", "coco", ["--max-size", "64", *RCNN], ("val_bbox_mAP", "val_segm_mAP")),
        ("seg", "semantic_fpn_litv2_s", "ade", ["--max-size", "128", *SEG], ("val_mIoU", "val_loss")),
    ],
)
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path, scenes, task, model, data, extra, keys):
    args = ["--task", task, "--model", model, "--data", str(scenes / data), *RECIPE, *extra]
    cmd = [sys.executable, "-m", "litvit.train", *args]
    popen = dict(cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    straight = subprocess.Popen([*cmd, "--output", str(tmp_path / "a")], **popen)
    killed = subprocess.Popen([*cmd, "--save-every-steps", "1", "--output", str(tmp_path / "b")], bufsize=1, **popen)
    seen = []
    for line in killed.stdout:
        seen.append(line)
        if "saved" in line and "(epoch 2, step 1/4" in line:
            os.kill(killed.pid, signal.SIGKILL)
            break
    killed.wait(timeout=120)
    assert killed.returncode == -signal.SIGKILL, "".join(seen)
    out_a, _ = straight.communicate(timeout=300)
    assert straight.returncode == 0, out_a

    b = tmp_path / "b"
    interrupted = load(b / "last.pth")["progress"]
    assert interrupted["epoch"] == 1 and interrupted["batch"] in (1, 2, 3)
    resumed = run_module("litvit.train", ["--resume", str(b)], cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {b / 'last.pth'} at epoch 2, step {interrupted['batch']}" in resumed.stdout

    a, c = load(tmp_path / "a" / "last.pth"), load(b / "last.pth")
    assert c["progress"]["update"] == a["progress"]["update"] == 8
    assert_same_tensors(a["model"], c["model"], "model: ")
    assert_same_tensors(optimizer_tensors(a["optimizer"]), optimizer_tensors(c["optimizer"]), "optimizer: ")
    assert a["scheduler"] == c["scheduler"]
    metrics_a = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    metrics_c = [json.loads(x) for x in (b / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics_c] == [1, 2]
    for ma, mc in zip(metrics_a, metrics_c):
        for key in ("step", "train_loss", "lr", *keys):
            assert ma[key] == mc[key], key
