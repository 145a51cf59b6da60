"""A 2-process torchrun run on CPU (gloo): disjoint shards, rank 0 writes, ranks stay in step, and the sharded
validation equals a single-process evaluation of the saved checkpoint."""

import json

import pytest

from litvit.cli import main

from .helpers import load, make_tree, torchrun


def test_two_process_torchrun_cpu(tmp_path):
    tree = make_tree(tmp_path / "data", per_class={"train": 10, "val": 5})  # 30 train, 15 val (odd: no padding)
    out = tmp_path / "run"
    result = torchrun(
        "litvit.train",
        [
            "--data",
            str(tree),
            "--threads",
            "1",
            "--epochs",
            "2",
            "--warmup-epochs",
            "0",
            "--batch-size",
            "4",
            "--workers",
            "0",
            "--log-samples",
            "--no-progress",
            "--output",
            str(out),
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("litvit train: litv2_nano") == 1  # only rank 0 prints
    assert "batch 8 (4 x 2 processes)" in result.stdout

    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["total_batch"] == 8 and summary["ranks_in_sync"] is True
    assert summary["steps"] == 2 * 3  # 15 images per rank -> 3 steps of 4 per epoch
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2  # one line per epoch, from rank 0 only
    assert load(out / "last.pth")["resolved"]["world_size"] == 2

    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [(s["epoch"], s["rank"]) for s in samples] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    for epoch in (0, 2):
        r0, r1 = samples[epoch]["indices"], samples[epoch + 1]["indices"]
        assert len(r0) == len(r1) == 12 and len(set(r0)) == 12 and len(set(r1)) == 12
        assert not set(r0) & set(r1)  # disjoint shards
        assert set(r0) | set(r1) <= set(range(30))
    assert samples[0]["indices"] != samples[2]["indices"]  # reshuffled every epoch

    # the 2-process sharded validation is exactly a 1-process evaluation of what rank 0 saved
    assert main(["eval", "--checkpoint", str(out / "last.pth"), "--json", str(tmp_path / "eval.json")]) == 0
    single = json.loads((tmp_path / "eval.json").read_text())
    assert single["images"] == 15
    assert single["top1"] == pytest.approx(summary["final_top1"], abs=1e-9)
    assert single["top5"] == pytest.approx(summary["final_top5"], abs=1e-9)


def test_sigterm_to_torchrun_stops_every_rank_at_one_step_saved_and_resume_is_exact(tmp_path):
    """torchrun passes a SIGTERM (`docker stop`, Kubernetes) or Ctrl-C on to each rank's process group, loader workers
    included. The workers died of it, then the ranks, and torchrun killed what was left 30 s later: everything since
    the last checkpoint was lost. Now the ranks agree on one optimizer step, save it and stop; resumed under
    torchrun, the run ends as the one left alone, bit for bit."""
    import signal
    import sys

    from .helpers import assert_same_runs, signal_when, start

    tree = make_tree(tmp_path / "data", per_class={"train": 16, "val": 2})  # 48 images: 12 steps of 2 x 2 an epoch
    args = ["--data", str(tree), "--threads", "1", "--epochs", "2", "--warmup-epochs", "1", "--batch-size", "2"]
    args += ["--workers", "1", "--deterministic", "--drop-path", "0.1", "--no-progress", "--log-interval", "1"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "litvit.train", *args]
    straight = start([*cmd, "--output", str(tmp_path / "a")], tmp_path)
    b = [*cmd, "--output", str(tmp_path / "b")]
    _, text = signal_when(b, tmp_path, "epoch 1/2 step 1/12", signal.SIGTERM, False)  # torchrun, as `docker stop`
    progress = load(tmp_path / "b" / "last.pth")["progress"]
    assert 1 <= progress["update"] < 24, text  # saved where it stopped (mid epoch 1 but on a slow machine)
    assert f"(optimizer step {progress['update']}), saved in" in text, text
    assert "under torchrun with 2 processes" in text, text
    assert "[rank" not in text and "worker" not in text.replace("shutting down workers", ""), text  # no rank failed
    out_a, _ = straight.communicate(timeout=180)
    assert straight.returncode == 0, out_a
    resumed = torchrun("litvit.train", ["--resume", str(tmp_path / "b")], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert_same_runs(tmp_path / "a", tmp_path / "b", 24, ("val_top1", "val_loss"))


def test_an_error_on_one_rank_ends_the_run_with_one_line_per_rank(tmp_path):
    """A rank failing alone (an unreadable image with --bad-images error) waited in a barrier while the other waited
    for it in the gradient all-reduce: the run hung until killed. Now the failing rank leaves, says why in one line,
    and the other says in one line that it stopped because a process is gone."""
    tree = make_tree(tmp_path / "data", per_class={"train": 16, "val": 2})
    for c in ("cat", "dog", "emu"):
        for i in range(1, 16, 4):
            (tree / "train" / c / f"{i}.png").write_bytes(b"not an image")
    args = ["--data", str(tree), "--threads", "1", "--epochs", "1", "--warmup-epochs", "0", "--batch-size", "2"]
    args += ["--workers", "0", "--bad-images", "error", "--no-progress", "--output", str(tmp_path / "run")]
    result = torchrun("litvit.train", args, cwd=tmp_path, timeout=120)
    text = result.stdout + result.stderr
    assert result.returncode != 0 and "cannot read image" in text and "pass --bad-images skip" in text, text
    assert "another process of the run is gone (torch.distributed: " in text, text
    assert "[rank0]: Traceback" not in text and "[rank1]: Traceback" not in text, text
