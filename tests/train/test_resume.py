"""A run killed with SIGKILL in the middle of an epoch and resumed ends with the same weights, EMA, optimizer state
and metrics as the same run left alone (deterministic CPU mode)."""

import json
import os
import signal
import subprocess
import sys

from .helpers import assert_same_tensors, env, load, make_tree, optimizer_tensors, run_module

# Everything that draws random numbers is on: shuffling, RandAugment (NumPy + Python random), random erasing (torch),
# mixup / cutmix (NumPy), drop path (torch), a loader worker, EMA, warmup + cosine.
RECIPE = [
    "--threads",
    "1",
    "--epochs",
    "2",
    "--warmup-epochs",
    "1",
    "--batch-size",
    "4",
    "--workers",
    "1",
    "--deterministic",
    "--seed",
    "3",
    "--drop-path",
    "0.1",
    "--mixup",
    "0.8",
    "--cutmix",
    "1.0",
    "--reprob",
    "0.25",
    "--hflip",
    "0.5",
    "--auto-augment",
    "rand-m9-mstd0.5-inc1",
    "--model-ema",
    "--model-ema-decay",
    "0.9",
    "--no-progress",
]


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path):
    tree = make_tree(tmp_path / "data", per_class={"train": 16, "val": 2})  # 48 images: 12 steps per epoch
    args = ["--data", str(tree), *RECIPE]
    # the uninterrupted run, alongside the one that gets killed
    straight = subprocess.Popen(
        [sys.executable, "-m", "litvit.train", *args, "--output", str(tmp_path / "a")],
        cwd=tmp_path,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    killed = subprocess.Popen(
        [sys.executable, "-m", "litvit.train", *args, "--save-every-steps", "3", "--output", str(tmp_path / "b")],
        cwd=tmp_path,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    seen = []
    for line in killed.stdout:
        seen.append(line)
        if "saved" in line and "(epoch 2, step 3/12" in line:
            os.kill(killed.pid, signal.SIGKILL)
            break
    killed.wait(timeout=60)
    assert killed.returncode == -signal.SIGKILL, "".join(seen)
    out_a, _ = straight.communicate(timeout=180)
    assert straight.returncode == 0, out_a

    b = tmp_path / "b"
    interrupted = load(b / "last.pth")["progress"]  # a mid-epoch-2 checkpoint (step 3, or a later one)
    assert interrupted["epoch"] == 1 and interrupted["batch"] in (3, 6, 9)
    assert interrupted["update"] == 12 + interrupted["batch"]
    assert len((b / "metrics.jsonl").read_text().splitlines()) == 1

    resumed = run_module("litvit.train", ["--resume", str(b)], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {b / 'last.pth'} at epoch 2, step {interrupted['batch']}" in resumed.stdout

    a, c = load(tmp_path / "a" / "last.pth"), load(b / "last.pth")
    assert c["progress"]["update"] == a["progress"]["update"] == 24
    assert_same_tensors(a["model"], c["model"], "model: ")
    assert_same_tensors(a["model_ema"], c["model_ema"], "EMA: ")
    assert_same_tensors(optimizer_tensors(a["optimizer"]), optimizer_tensors(c["optimizer"]), "optimizer: ")
    assert a["scheduler"] == c["scheduler"]
    metrics_a = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    metrics_c = [json.loads(x) for x in (b / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics_c] == [1, 2]
    for ma, mc in zip(metrics_a, metrics_c):
        for key in ("step", "train_loss", "lr", "val_top1", "val_loss", "val_ema_top1"):
            assert ma[key] == mc[key], key
