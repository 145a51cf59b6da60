"""A run killed with SIGKILL in the middle of an epoch and resumed ends with the same weights, EMA, optimizer state
and metrics as the same run left alone (deterministic CPU mode)."""

from .helpers import assert_same_runs, kill_then_resume, make_tree

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
    interrupted = kill_then_resume(args, tmp_path, "(epoch 2, step 3/12", save_every=3)
    assert interrupted["epoch"] == 1 and interrupted["batch"] in (3, 6, 9)  # mid epoch 2 (step 3, or a later save)
    assert interrupted["update"] == 12 + interrupted["batch"]
    assert_same_runs(tmp_path / "a", tmp_path / "b", 24, ("val_top1", "val_loss", "val_ema_top1"), ema=True)
