"""`litvit train` end to end (in-process, tiny runs): outputs, checkpoints, fine-tuning, and failures that lose
nothing (a non-finite loss, a full disk, a wrong --resume)."""

import contextlib
import errno
import io
import json
import re

import pytest
import timm
import torch

from litvit import runtime as rt
from litvit.cli import main
from litvit.tasks.classification import build_model
from litvit.train import checkpoint as ckpt_mod
from litvit.train.config import build_config

from .helpers import FAST, load, make_tree


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """The default run (litv2_nano on the embedded digits), shortened to one epoch."""
    out = tmp_path_factory.mktemp("digits") / "run"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(
            ["train", "--epochs", "1", "--warmup-epochs", "0", "--threads", "1", "--no-progress", "--output", str(out)]
        )
    assert code == 0
    return out, stdout.getvalue()


def test_default_run_writes_metrics_summary_and_checkpoints(digits_run):
    out, stdout = digits_run
    assert "litv2_nano" in stdout and "embedded digits (1437 train / 360 val, 10 classes)" in stdout
    final = re.search(r"val top-1 ([\d.]+)% \(>= 95% target (met|NOT met)\) in \d+", stdout)
    assert final, stdout
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1 and metrics[0]["epoch"] == 1 and metrics[0]["step"] == 1437 // 64
    assert {"train_loss", "lr", "val_top1", "val_top5", "images_per_s", "elapsed_s"} <= metrics[0].keys()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "litv2_nano" and summary["epochs"] == 1 and summary["world_size"] == 1
    assert summary["final_top1"] == pytest.approx(metrics[0]["val_top1"], abs=1e-3)
    assert summary["best_top1"] == summary["final_top1"] and summary["images_per_s"] > 0
    assert summary["target_met"] == (summary["final_top1"] >= 95.0)
    assert float(final.group(1)) == pytest.approx(summary["final_top1"], abs=0.05)
    for name in ("last", "best", "metrics", "config"):
        assert (out / summary["outputs"][name].split("/")[-1]).exists()


def test_checkpoint_is_plain_data_with_everything_to_resume(digits_run):
    out, _ = digits_run
    ck = load(out / "last.pth")  # weights_only=True: no pickled classes
    assert ck["format"] == "litvit-train"
    assert {"model", "optimizer", "scheduler", "progress", "rng", "config", "resolved", "classes"} <= ck.keys()
    assert ck["progress"]["epoch"] == 1 and ck["progress"]["batch"] == 0 and ck["progress"]["update"] == 22
    assert set(ck["rng"][0]) == {"python", "numpy", "torch", "cuda"}
    assert ck["config"]["model"] == "litv2_nano" and isinstance(ck["config"], dict)
    model = timm.create_model("litv2_nano", num_classes=10)
    model.load_state_dict(ck["model"])
    assert torch.equal(load(out / "best.pth")["model"]["head.weight"], ck["model"]["head.weight"])


def test_eval_of_the_checkpoint_matches_training(digits_run, capsys):
    out, _ = digits_run
    summary = json.loads((out / "summary.json").read_text())
    assert main(["eval", "--checkpoint", str(out / "last.pth"), "--json", str(out / "eval.json")]) == 0
    res = json.loads((out / "eval.json").read_text())
    assert res["images"] == 360 and res["model"] == "litv2_nano"
    assert res["top1"] == pytest.approx(summary["final_top1"], abs=1e-9)


def test_resume_from_another_model_or_a_weights_file_is_refused(digits_run, tmp_path, capsys):
    out, _ = digits_run
    before = (out / "last.pth").read_bytes()
    assert main(["train", "--resume", str(out), "--model", "lit_ti"]) == 2
    err = capsys.readouterr().err
    assert "is a litv2_nano run, not lit_ti" in err and len(err.strip().splitlines()) == 1
    weights = tmp_path / "weights.pth"
    torch.save({"model": load(out / "last.pth")["model"]}, weights)
    assert main(["train", "--resume", str(weights)]) == 2
    assert "not a litvit training checkpoint" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "missing")]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert (out / "last.pth").read_bytes() == before


def test_refuses_to_overwrite_a_run(digits_run, capsys):
    out, _ = digits_run
    assert main(["train", "--output", str(out)]) == 2
    assert "already holds a run" in capsys.readouterr().err


@pytest.mark.parametrize("source", ["official", "litvit"])
def test_finetune_reinitialises_the_head_and_keeps_the_backbone(digits_run, tmp_path, capsys, source):
    if source == "official":  # the official layout: {'model': sd} saved from DDP ('module.' prefixes)
        sd = timm.create_model("litv2_nano", num_classes=1000).state_dict()
        path = tmp_path / "official.pth"
        torch.save({"model": {f"module.{k}": v for k, v in sd.items()}, "epoch": 299}, path)
    else:
        path = digits_run[0] / "best.pth"
        sd = load(path)["model"]
    cfg = build_config("nano", {"pretrained": str(path)})
    model = build_model(cfg, num_classes=3)
    own = model.state_dict()
    assert own["head.weight"].shape == (3, 256) and not torch.equal(own["head.weight"][:3], sd["head.weight"][:3])
    for k, v in own.items():
        if not k.startswith("head."):
            assert torch.equal(v, sd[k]), k
    tree = make_tree(tmp_path / "data")
    assert (
        main(
            [
                "train",
                "--data",
                str(tree),
                "--pretrained",
                str(path),
                "--num-classes",
                "3",
                *FAST,
                "--output",
                str(tmp_path / "ft"),
            ]
        )
        == 0
    )
    assert f"initialised from {path}" in capsys.readouterr().out
    assert load(tmp_path / "ft" / "last.pth")["model"]["head.weight"].shape == (3, 256)
    assert (
        main(
            [
                "train",
                "--data",
                str(tree),
                "--pretrained",
                str(path),
                "--num-classes",
                "5",
                *FAST,
                "--output",
                str(tmp_path / "ft5"),
            ]
        )
        == 2
    )
    assert "--num-classes 5, but the data has 3 classes" in capsys.readouterr().err


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    real = timm.create_model

    def diverging(*args, **kwargs):  # a model whose 5th training forward pass blows up
        model = real(*args, **kwargs)
        calls = [0]

        def hook(module, inputs, output):
            if module.training:
                calls[0] += 1
                if calls[0] == 5:
                    return output * float("nan")
            return None

        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(timm, "create_model", diverging)
    tree = make_tree(tmp_path / "data")  # 24 images, batch 4: 6 steps per epoch
    out = tmp_path / "run"
    code = main(["train", "--data", str(tree), *FAST, "--save-every-steps", "2", "--output", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert "the loss is NaN at epoch 1, step 5 of 6 (optimizer step 5" in err[0]
    assert f"the last good checkpoint, {out / 'last.pth'} (epoch 1, step 4, optimizer step 4), is kept" in err[0]
    ck = load(out / "last.pth")
    assert ck["progress"]["update"] == 4 and ck["progress"]["batch"] == 4
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
    assert not (out / "best.pth").exists() and not (out / "metrics.jsonl").exists()


def test_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, capsys, monkeypatch):
    real = ckpt_mod._write
    calls = [0]

    def disk_fills_up(obj, f):
        calls[0] += 1
        if calls[0] == 2:
            f.write(b"PK\x03\x04 half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        real(obj, f)

    monkeypatch.setattr(ckpt_mod, "_write", disk_fills_up)
    tree = make_tree(tmp_path / "data")
    out = tmp_path / "run"
    code = main(["train", "--data", str(tree), *FAST, "--save-every-steps", "2", "--output", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert f"could not write checkpoint '{out / 'last.pth'}' (no space left on device)" in err[0]
    assert "last.pth still holds the previous checkpoint" in err[0] and "--resume" in err[0]
    ck = load(out / "last.pth")  # the step-2 checkpoint, whole
    assert ck["progress"]["update"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "last.pth"]  # no temp file left behind


def test_full_disk_while_writing_the_summary_or_metrics_is_one_line(tmp_path, capsys, monkeypatch):
    """The run's other files: a full disk at the end (summary.json) or after an epoch (metrics.jsonl) was an OSError
    traceback; config.yaml and summary.json are written whole or not at all."""
    from litvit.train import output

    tree = make_tree(tmp_path / "data")
    for name in ("summary.json", "metrics.jsonl"):
        real = output.RunFolder._write

        def full(self, file, write, atomically=True, name=name, real=real):
            if file == name:
                write = lambda path: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device"))  # noqa: E731
            return real(self, file, write, atomically)

        monkeypatch.setattr(output.RunFolder, "_write", full)
        out = tmp_path / name
        code = main(["train", "--data", str(tree), *FAST, "--output", str(out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and len(err) == 1, err
        assert f"cannot write {out / name} (No space left on device): free space" in err[0]
        assert load(out / "last.pth")["progress"]["epoch"] == 1  # the epoch's checkpoint is there
        assert not [p for p in out.iterdir() if p.name.startswith(".")]
        monkeypatch.undo()


def test_atomic_save_never_tears_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pth"
    ckpt_mod.atomic_save({"step": torch.tensor(1)}, path)
    old = path.read_bytes()

    def interrupted(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt_mod, "_write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ckpt_mod.atomic_save({"step": torch.tensor(2)}, path)
    assert path.read_bytes() == old and [p.name for p in tmp_path.iterdir()] == ["last.pth"]
    monkeypatch.setattr(ckpt_mod, "_write", lambda obj, f: (_ for _ in ()).throw(OSError(errno.EACCES, "denied")))
    with pytest.raises(ckpt_mod.CheckpointSaveError, match="still holds the previous checkpoint"):
        ckpt_mod.atomic_save({"step": torch.tensor(3)}, path)
    assert load(path)["step"] == 1


def test_training_options_run_and_are_recorded(tmp_path, capsys):
    tree = make_tree(tmp_path / "data")  # 24 images: batch 2 x 2 accumulated -> 6 optimizer steps
    out = tmp_path / "run"
    argv = [
        "train",
        "--data",
        str(tree),
        *FAST,
        "--batch-size",
        "2",
        "--accum-steps",
        "2",
        "--amp",
        "bf16",
        "--grad-checkpointing",
        "--channels-last",
        "--model-ema",
        "--output",
        str(out),
    ]
    assert main(argv) == 0
    assert "batch 4 (2 x 1 process x 2 accumulated)" in capsys.readouterr().out
    ck = load(out / "last.pth")
    assert ck["progress"]["update"] == 6 and ck["resolved"]["amp"] == "bfloat16"
    assert ck["resolved"]["total_batch"] == 4 and ck["resolved"]["channels_last"] is True
    assert ck["model_ema"].keys() == ck["model"].keys()
    assert not torch.equal(ck["model_ema"]["head.weight"], ck["model"]["head.weight"])


def test_tensorboard_without_the_package_is_a_clear_error(tmp_path, capsys):
    try:
        import tensorboard  # noqa: F401

        pytest.skip("tensorboard is installed")
    except ImportError:
        pass
    tree = make_tree(tmp_path / "data")
    assert main(["train", "--data", str(tree), *FAST, "--tensorboard", "--output", str(tmp_path / "run")]) == 2
    assert "--tensorboard needs the tensorboard package: pip install tensorboard" in capsys.readouterr().err


def test_resume_the_latest_run_and_extend_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tree = make_tree(tmp_path / "data")  # 6 steps per epoch
    assert main(["train", "--data", str(tree), *FAST]) == 0  # default output: runs/litv2_nano-<time>
    (run,) = (tmp_path / "runs").iterdir()
    capsys.readouterr()
    assert main(["train", "--resume", "--epochs", "2"]) == 0  # the latest run under ./runs
    captured = capsys.readouterr()
    assert f"resumed from {run.relative_to(tmp_path)}/last.pth at end of epoch 1 (optimizer step 6)" in captured.out
    assert "continuing on the new schedule" in captured.err
    assert [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert load(run / "last.pth")["progress"]["update"] == 12
    assert main(["train", "--resume", str(run)]) == 0
    assert "already finished" in capsys.readouterr().out


def test_bf16_training_warns_where_bf16_gemms_are_slower(tmp_path, capsys, monkeypatch):
    """`--amp bf16` on a CPU whose bf16 matrix products are slower than fp32 ones says so at the start, with the fix
    (the probe itself is litvit.runtime.bf16_matmul_speed, tested in tests/test_runtime.py)."""
    monkeypatch.setattr(rt, "bf16_matmul_speed", lambda *a, **k: 0.58)
    tree = make_tree(tmp_path / "data")
    code = main(["train", "--data", str(tree), *FAST, "--amp", "bf16", "--output", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 0
    assert "warning: bf16 matrix products ran at 0.58x the speed of fp32 ones on this CPU" in err
    assert "use --amp fp32" in err
