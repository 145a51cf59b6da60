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
