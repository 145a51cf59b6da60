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


def test_validation_failing_after_an_epoch_keeps_the_epoch_and_resumes_exactly(tmp_path, capsys):
    """A validation file past the first that cannot be read (`--bad-images error`) stops the run after its first
    epoch trained: that epoch is saved before the error, and once the file is fixed `--resume` validates it and ends
    as the run left alone does. A validation set of which nothing loads is refused before anything trains."""
    from litvit.cli import main

    tree = make_tree(tmp_path / "data", per_class={"train": 4, "val": 2})  # 12 images: 3 steps per epoch
    args = ["train", "--data", str(tree), *RECIPE, "--bad-images", "error"]
    assert main([*args, "--output", str(tmp_path / "a")]) == 0
    bad = tree / "val" / "emu" / "1.png"  # the last validation file: the check before training reads the first
    good = bad.read_bytes()
    bad.write_bytes(b"not a png")
    assert main([*args, "--output", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "epoch 1 trained but could not be validated" in err and f"cannot read image '{bad}'" in err
    assert (tmp_path / "b" / "last.pth").is_file()
    bad.write_bytes(good)
    assert main(["train", "--resume", str(tmp_path / "b"), "--no-progress"]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert_same_runs(tmp_path / "a", tmp_path / "b", 6, ("val_top1", "val_loss", "val_ema_top1"), ema=True)

    for image in (tree / "val").rglob("*.png"):
        image.write_bytes(b"not a png")
    assert main([*args[:-2], "--output", str(tmp_path / "c")]) == 2
    line = capsys.readouterr().err.strip()
    assert "no readable validation image: all 6 failed to load:" in line and "... (3 more)" in line
    assert "\n" not in line and not (tmp_path / "c" / "last.pth").exists()
    assert main(["eval", "--checkpoint", str(tmp_path / "a" / "best.pth"), "--data", str(tree)]) == 2
    assert "no readable validation image: all 6 failed to load:" in capsys.readouterr().err


def test_ctrl_c_stops_at_the_end_of_a_step_saved_and_resume_is_exact(tmp_path):
    """Ctrl-C (SIGINT to the whole process group, the loader worker included) asks the run to stop: it finishes the
    optimizer step, saves it, exits with status 130 naming the command that continues; resumed, the run ends as the
    one left alone, bit for bit. Without this, everything since the last checkpoint (up to an epoch) was lost."""
    import signal
    import sys

    from .helpers import load, run_module, signal_when, start

    tree = make_tree(tmp_path / "data", per_class={"train": 16, "val": 2})  # 12 steps per epoch
    cmd = [sys.executable, "-m", "litvit.train", "--data", str(tree), *RECIPE, "--log-interval", "1"]
    straight = start([*cmd, "--output", str(tmp_path / "a")], tmp_path)
    code, text = signal_when(
        [*cmd, "--output", str(tmp_path / "b")], tmp_path, "epoch 2/2 step 2/12", signal.SIGINT, True
    )
    assert code == 130, text
    assert "stopping at the end of this optimizer step" in text and "Traceback" not in text
    progress = load(tmp_path / "b" / "last.pth")["progress"]
    assert progress["epoch"] == 1 and 2 <= progress["batch"] < 12, progress  # mid epoch 2, not its last save
    assert f"stopped at epoch 2, step {progress['batch']} (optimizer step {12 + progress['batch']})" in text
    assert f"litvit train --resume {tmp_path / 'b'}" in text
    out_a, _ = straight.communicate(timeout=180)
    assert straight.returncode == 0, out_a
    resumed = run_module("litvit.train", ["--resume", str(tmp_path / "b")], cwd=tmp_path, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_runs(tmp_path / "a", tmp_path / "b", 24, ("val_top1", "val_loss", "val_ema_top1"), ema=True)


def test_sigterm_stops_at_the_end_of_a_step_saved(tmp_path):
    """SIGTERM to the training process (`kill PID`, `docker stop`, Kubernetes ending a pod) was an instant death
    losing everything since the last checkpoint; now it stops as Ctrl-C does, with status 143. Sent to every process
    of the run (systemd, `kill -- -PGID`), it killed the loader worker, which then failed the run: no longer."""
    import signal
    import sys

    from .helpers import load, signal_when

    tree = make_tree(tmp_path / "data", per_class={"train": 16, "val": 2})  # 12 steps per epoch
    cmd = [sys.executable, "-m", "litvit.train", "--data", str(tree), *RECIPE, "--log-interval", "1"]
    cmd += ["--output", str(tmp_path / "b")]
    code, text = signal_when(cmd, tmp_path, "epoch 1/2 step 3/12", signal.SIGTERM, True)  # the run and its worker
    assert code == 143, text
    assert "(a second SIGTERM: at once)" in text and "Traceback" not in text and "worker" not in text
    progress = load(tmp_path / "b" / "last.pth")["progress"]
    assert progress["epoch"] == 0 and 3 <= progress["batch"] < 12, progress
    assert f"stopped at epoch 1, step {progress['batch']}" in text


def test_ctrl_c_during_the_last_validation_lets_the_run_finish(tmp_path, monkeypatch, capsys):
    """A stop asked while the last epoch validates has nothing left to save for: the run ends as usual (status 0,
    summary.json), while one asked during an earlier validation stops after that epoch's save."""
    from litvit.cli import main
    from litvit.train import loop

    from .helpers import FAST

    validate = loop.validate

    def asked_during(run):
        run.stop_asked = True  # what the first Ctrl-C's handler sets
        return validate(run)

    monkeypatch.setattr(loop, "validate", asked_during)
    tree = make_tree(tmp_path / "data", per_class={"train": 4, "val": 1})
    args = ["train", "--data", str(tree), *FAST]
    assert main([*args, "--output", str(tmp_path / "last"), "--epochs", "1"]) == 0
    assert (tmp_path / "last" / "summary.json").is_file()
    assert main([*args, "--output", str(tmp_path / "early"), "--epochs", "2"]) == 130
    assert "stopped at end of epoch 1" in capsys.readouterr().err
    assert not (tmp_path / "early" / "summary.json").exists() and (tmp_path / "early" / "last.pth").is_file()


def _die_at_read(monkeypatch, counter, split, at):
    """Loader workers (forked: they inherit the patch) kill themselves with SIGKILL, as the out-of-memory killer
    does, at their `at`-th read of a `split` image (counted in a file: workers come and go)."""
    import os
    import signal

    from litvit.data import folder

    real, parent = getattr(folder.load_rgb, "__wrapped__", folder.load_rgb), os.getpid()  # one trap at a time
    counter.write_text("0")

    def load_rgb(path, *args, **kwargs):
        if os.getpid() != parent and f"/{split}/" in str(path):
            n = int(counter.read_text()) + 1
            counter.write_text(str(n))
            if n == at:
                os.kill(os.getpid(), signal.SIGKILL)
        return real(path, *args, **kwargs)

    load_rgb.__wrapped__ = real
    monkeypatch.setattr(folder, "load_rgb", load_rgb)


def test_a_loader_worker_killed_mid_run_is_one_line_and_the_run_resumes(tmp_path, monkeypatch, capsys):
    """torch's "DataLoader worker (pid N) is killed by signal: Killed" (the OOM killer) was a traceback, raised by
    its SIGCHLD handler wherever the main process was (in a checkpoint's fsync once)."""
    from litvit.cli import main

    data = make_tree(tmp_path / "data")  # 24 training images an epoch
    fast = ["--threads", "1", "--warmup-epochs", "0", "--batch-size", "4", "--workers", "1", "--no-progress"]
    run = tmp_path / "run"
    _die_at_read(monkeypatch, tmp_path / "reads", "train", at=24 + 10)  # in epoch 2
    assert main(["train", "--data", str(data), "--epochs", "3", *fast, "--output", str(run)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "litvit train: a data-loading worker died (DataLoader worker (pid" in err[0], err
    assert f"continue from last.pth (end of epoch 1, optimizer step 6) by `litvit train --resume {run}`" in err[0]
    assert err[0].endswith("with fewer --workers")
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temporary file left
    _die_at_read(monkeypatch, tmp_path / "reads", "val", at=2)  # in epoch 2's validation: the epoch is kept
    assert main(["train", "--resume", str(run)]) == 1
    err = capsys.readouterr().err
    assert "epoch 2 trained but could not be validated" in err and "last.pth (epoch 2, step 6, " in err, err
    assert main(["train", "--resume", str(run), "--workers", "0"]) == 0
    assert "epoch 3/3" in capsys.readouterr().out
    _die_at_read(monkeypatch, tmp_path / "reads", "val", at=3)
    assert main(["eval", "--checkpoint", str(run / "last.pth"), "--workers", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("run again with fewer --workers"), err
