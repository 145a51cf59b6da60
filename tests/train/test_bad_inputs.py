"""Bad input to `litvit train` / `litvit eval` gets one line and exit status 2 before anything starts, and leaves
nothing behind; one output folder serves one run at a time; a run's files stay usable from any folder."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from litvit.cli import main
from litvit.errors import CheckpointError, ConfigError, DataError, LitvitError
from litvit.train.output import RunFolder

from .helpers import FAST, ROOT, env, make_tree


def one_error_line(capsys, prog: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{prog}: "), err  # no traceback, one line
    return err[0]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--img-size", "16"], "--img-size 16 is too small for this model: pass 29 or more"),
        (["--model-kwargs", "alpha=1.5"], "litv2_nano does not take these settings (alpha must be a number in [0, 1]"),
        (["--model", "litv2_nan"], "unknown model 'litv2_nan' (did you mean litv2_nano"),
        (["--img-size", "100000"], "img_size must be a whole number of pixels from 1 to 4096, got 100000"),
        # settings timm's factories accept and then fail on (an assertion, a traceback from the first image drawn,
        # or silently): each is refused before the data is read
        (["--opt", "adamx"], "--opt 'adamx': Optimizer adamx not found in registry; pass a timm optimizer name"),
        (["--sched", "cosnie"], "--sched 'cosnie' with --sched-on step: Unknown scheduler 'cosnie'; pass a timm"),
        (["--sched", "plateau"], "Plateau LR only supports step per epoch; pass a timm schedule"),
        (["--auto-augment", "randaug"], "--auto-augment 'randaug' is not a timm policy: use e.g. rand-m9-mstd0.5"),
        (["--auto-augment", "v9"], "--auto-augment 'v9' is not a timm policy (Unknown AA policy v9)"),
        (["--train-interpolation", "cubic"], "--train-interpolation 'cubic' is not an interpolation: use bicubic"),
        (["--interpolation", "random"], "--interpolation 'random' is not an interpolation"),
        (["--ratio", "0", "0"], "ratio must be 0 < A <= B (crop aspect ratios), got 0.0 0.0"),
        (["--scale", "0.5", "2"], "scale must be 0 < A <= B <= 1 (fractions of the image area), got 0.5 2.0"),
        (["--hflip", "5"], "hflip is a probability: it must be in [0, 1], got 5.0"),
        (["--reprob", "-0.1"], "reprob is a probability"),
        (["--remode", "noise"], "remode must be const, rand or pixel, got 'noise'"),
        (["--mixup-mode", "pairs"], "mixup_mode must be batch, pair or elem"),
        (["--clip-grad", "0"], "clip_grad must be a number > 0, or none for no clipping"),
        (["--clip-mode", "l2"], "clip_mode must be norm, value or agc"),
        (["--opt-betas", "0.9", "1.5"], "opt_betas must be in [0, 1), got [0.9, 1.5]"),
        (["--weight-decay", "-1"], "weight_decay must be a finite number >= 0, got -1.0"),
        (["--target-top1", "200"], "target_top1 is a score in percent: it must be in [0, 100], got 200.0"),
    ],
)
def test_bad_train_settings_are_one_line_and_leave_no_folder(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    assert main(["train", *argv, *FAST, "--output", str(out)]) == 2
    assert message in one_error_line(capsys, "litvit train")
    assert not out.exists()  # the run never started: no folder left behind


def test_a_run_that_fails_before_its_first_checkpoint_removes_its_folder(tmp_path, capsys, monkeypatch):
    from litvit.tasks.classification import ClassificationTask

    def broken(self, model, batch, device):
        raise DataError("the batch is broken: fix the data")

    monkeypatch.setattr(ClassificationTask, "loss", broken)
    out = tmp_path / "run"
    assert main(["train", "--data", str(make_tree(tmp_path / "data")), *FAST, "--output", str(out)]) == 2
    assert "the batch is broken" in one_error_line(capsys, "litvit train")
    assert not out.exists()
    keep = tmp_path / "mine"  # a folder the user made keeps what it had; only the run's own files go
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    assert main(["train", "--data", str(tmp_path / "data"), *FAST, "--output", str(keep)]) == 2
    capsys.readouterr()
    assert sorted(p.name for p in keep.iterdir()) == ["notes.txt"]


def test_one_class_is_not_a_classifier(tmp_path, capsys):
    data = make_tree(tmp_path / "data", classes=("cat",))
    assert main(["train", "--data", str(data), *FAST, "--output", str(tmp_path / "run")]) == 2
    line = one_error_line(capsys, "litvit train")
    assert "has one class ('cat'): a classifier needs two classes or more" in line


def test_two_runs_cannot_share_an_output_folder(tmp_path, capsys):
    out = tmp_path / "run"
    holder = RunFolder(out, resuming=False)
    holder.open()  # another run holds the folder
    try:
        assert main(["train", *FAST, "--output", str(out)]) == 2
        assert "is in use by another litvit train run" in one_error_line(capsys, "litvit train")
        assert not (out / "last.pth").exists() and not (out / "config.yaml").exists()
    finally:
        holder.close(started=True)
    holder = RunFolder(out, resuming=False)
    holder.open()  # released: the folder can be taken again
    holder.close(started=False)


def test_a_folder_that_cannot_be_locked_is_used_with_a_warning(tmp_path, capsys, monkeypatch):
    """Some NFS / FUSE mounts refuse locks (ENOLCK): that is not "in use by another run"."""
    import errno
    import fcntl

    def no_locks(fd, how):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    assert main(["train", *FAST, "--output", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert "cannot be locked (No locks available): a second run started into it would not be refused" in err
    assert (tmp_path / "run" / "last.pth").is_file()


def test_a_save_killed_mid_way_leaves_nothing_after_the_next_start(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *FAST, "--output", str(out)]) == 0
    stale = out / ".last.pth.12345-deadbeef.tmp"  # what a kill during atomic_write leaves
    stale.write_bytes(b"\0" * 1024)
    resume = ["--threads", "1", "--epochs", "2", "--batch-size", "4", "--workers", "0", "--no-progress"]
    assert main(["train", "--resume", str(out), *resume]) == 0
    capsys.readouterr()
    assert not stale.exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    # a training checkpoint holding a NaN weight is refused by eval and by resume, naming the tensor
    ck = torch.load(out / "last.pth", weights_only=True)
    ck["model"]["head.bias"][0] = float("nan")
    torch.save(ck, out / "last.pth")
    for argv in (["eval", "--checkpoint", str(out / "last.pth")], ["train", "--resume", str(out)]):
        assert main(argv) == 2
        line = one_error_line(capsys, f"litvit {argv[0]}")
        assert "1 tensor holds NaN or Inf: head.bias" in line, line


def test_a_damaged_training_checkpoint_is_one_line_in_eval_predict_and_resume(tmp_path, capsys):
    """An edited or truncated last.pth was torch's multi-line RuntimeError or a KeyError traceback in eval / predict
    / resume, and integer weights were cast into wrong ones silently."""
    out = tmp_path / "run"
    assert main(["train", *FAST, "--output", str(out)]) == 0
    capsys.readouterr()
    image = make_tree(tmp_path / "img", per_class={"val": 1}) / "val" / "cat" / "0.png"
    good = torch.load(out / "last.pth", weights_only=True)

    def damaged(edit):
        ck = torch.load(out / "last.pth", weights_only=True)
        edit(ck)
        path = tmp_path / "damaged.pth"
        torch.save(ck, path)
        return str(path)

    cases = [
        (
            lambda ck: ck["model"].__setitem__("head.weight", ck["model"]["head.weight"].long()),
            "not floating-point (1)",
        ),
        (lambda ck: ck["model"].__setitem__("head.weight", ck["model"]["head.weight"][:, :1]), "different shapes (1)"),
        (lambda ck: ck["model"].pop("head.bias"), "missing from the checkpoint (1): head.bias"),
        (lambda ck: ck["model"].__setitem__("extra", torch.ones(1)), "not in the model (1): extra"),
        (lambda ck: ck["model"].__setitem__("head.bias", 1.0), "not tensors (1): head.bias (float)"),
        (lambda ck: ck.__setitem__("model", 5), "model missing or of the wrong type"),
        (lambda ck: ck.pop("config"), "config missing or of the wrong type"),
        (lambda ck: ck["resolved"].pop("num_classes"), "resolved.num_classes missing"),
    ]
    for edit, message in cases:
        path = damaged(edit)
        for argv in (
            ["eval", "--checkpoint", path],
            ["predict", str(image), "--checkpoint", path],
            ["train", "--resume", path],
        ):
            assert main(argv) == 2, (message, argv)
            line = one_error_line(capsys, f"litvit {argv[0]}")
            assert message in line, (argv, line)
        assert main(["convert", path, str(tmp_path / "weights.safetensors")]) == 2, message  # its own wording
        one_error_line(capsys, "litvit convert")
    # what only resuming reads: the optimizer and run state
    for edit, message in [
        (lambda ck: ck.pop("optimizer"), "optimizer missing or of the wrong type"),
        (lambda ck: ck["progress"].__setitem__("epochs_done", 1), "progress.epochs_done missing"),
        (lambda ck: ck["optimizer"]["param_groups"].pop(), "optimizer state does not fit"),
    ]:
        argv = ["train", "--resume", damaged(edit)]
        assert main(argv) == 2, message
        assert message in one_error_line(capsys, "litvit train")
        assert main(["eval", "--checkpoint", argv[-1]]) == 0  # evaluating needs none of it
    assert torch.equal(
        torch.load(out / "last.pth", weights_only=True)["model"]["head.weight"], good["model"]["head.weight"]
    )


def test_resume_applies_changed_optimizer_settings_and_refuses_another_optimizer(tmp_path, capsys):
    """torch's Optimizer.load_state_dict puts the saved weight decay, betas and eps back: a changed --weight-decay on
    resume was silently ignored. Another --opt would mix two optimizers' states."""
    out = tmp_path / "run"
    assert main(["train", *FAST, "--output", str(out)]) == 0
    before = torch.load(out / "last.pth", weights_only=True)["optimizer"]["param_groups"]
    assert {g["weight_decay"] for g in before} == {0.0, 0.05} and before[0]["betas"] == (0.9, 0.999)
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--epochs", "2", "--opt", "sgd"]) == 2
    assert "trains with --opt adamw" in one_error_line(capsys, "litvit train")
    argv = ["train", "--resume", str(out), "--epochs", "2", "--weight-decay", "0.1", "--opt-betas", "0.8", "0.99"]
    assert main(argv) == 0
    assert "optimizer settings changed from the checkpoint's: betas, weight_decay" in capsys.readouterr().err
    after = torch.load(out / "last.pth", weights_only=True)["optimizer"]["param_groups"]
    assert [g["weight_decay"] for g in after] == [0.1 if g["weight_decay"] else 0.0 for g in before]
    assert all(g["betas"] == (0.8, 0.99) for g in after)


def test_eval_of_a_run_works_from_another_folder(tmp_path, capsys):
    work = tmp_path / "work"
    make_tree(work / "data")
    cmd = [sys.executable, "-m", "litvit.train", "--data", "data", *FAST, "--output", "run"]
    done = subprocess.run(cmd, cwd=work, env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cmd = [sys.executable, "-m", "litvit.eval", "--checkpoint", str(work / "run" / "best.pth"), "--workers", "0"]
    done = subprocess.run(cmd, cwd=elsewhere, env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"on {work / 'data'} (9 images" in done.stdout
    # a moved run resumes in its new folder (its config says `--output run`, relative to where it started), and a
    # metrics line torn by a kill mid-append is dropped instead of stopping the resume with a JSONDecodeError
    moved = elsewhere / "moved"
    shutil.move(str(work / "run"), str(moved))
    with open(moved / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "loss": 0.9')
    cmd = [sys.executable, "-m", "litvit.train", "--resume", str(moved), "--epochs", "2"]
    done = subprocess.run(cmd, cwd=elsewhere, env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["epoch"] for line in (moved / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert sorted(p.name for p in elsewhere.iterdir()) == ["moved"] and not (work / "run").exists()


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--model", "litv2_nano", "--data", "x"], "litv2_nano has no released weights to download: pass --checkpoint"),
        (["--model", "litv2_nano", "--checkpoint", "{ckpt}", "--img-size", "16"], "--img-size 16 is too small"),
        (["--model", "litv2_nano", "--checkpoint", "{text}", "--data", "x"], "not a PyTorch checkpoint"),
        (["--model", "litv2_nano", "--checkpoint", "{nan}", "--data", "x"], "NaN or Inf"),
        (["--model", "litv2_nano", "--checkpoint", "{ckpt}", "--img-size", "-5"], "--img-size must be a whole number"),
        (["--model", "litv2_nano", "--checkpoint", "{ckpt}", "--crop-pct", "0"], "--crop-pct must be in (0, 1]"),
        (
            ["--model", "litv2_nano", "--checkpoint", "{ckpt}", "--interpolation", "foo"],
            "'foo' is not an interpolation",
        ),
        (["--model", "litv2_nano", "--checkpoint", "{ckpt}", "--workers", "-1"], "--workers must be >= 0"),
        (["--model", "litv2_nano", "--checkpoint", "{ckpt}", "--max-size", "0"], "--max-size must be >= 1"),
        (["--model", "litv2_nano", "--checkpoint", "{ckpt}", "--json", "{ckpt}/r.json"], "--json '"),
        (
            ["--model", "litv2_nano", "--checkpoint", "{ckpt}", "--model-kwargs", "foo=1"],
            "litv2_nano does not take these settings (PyramidTrunk.__init__() got an unexpected keyword argument",
        ),
    ],
)
def test_bad_eval_requests_are_one_line(tmp_path, capsys, argv, message):
    import timm

    model = timm.create_model("litv2_nano", num_classes=3)
    torch.save(model.state_dict(), tmp_path / "ok.pth")
    sd = model.state_dict()
    sd["head.weight"][0, 0] = float("nan")
    torch.save(sd, tmp_path / "nan.pth")
    (tmp_path / "notes.pth").write_text("these are notes, not weights\n")
    paths = {"ckpt": tmp_path / "ok.pth", "text": tmp_path / "notes.pth", "nan": tmp_path / "nan.pth"}
    assert main(["eval", *[a.format(**paths) for a in argv]]) == 2
    assert message in one_error_line(capsys, "litvit eval")


def test_errors_carry_their_exit_status_and_rank_behaviour():
    from litvit.errors import BadImageError, CheckpointSaveError, NonFiniteLossError

    for cls in (ConfigError, CheckpointError, DataError):
        assert issubclass(cls, LitvitError) and issubclass(cls, ValueError) and cls.exit_code == 2
    assert NonFiniteLossError.exit_code == CheckpointSaveError.exit_code == 1
    assert not BadImageError.same_on_all_ranks and ConfigError.same_on_all_ranks


def test_running_out_of_memory_is_one_line_naming_what_to_lower(tmp_path, capsys, monkeypatch):
    """torch's allocation failures (CPU and GPU) and dead loader workers are the machine running out, not bugs:
    one line, exit status 1, the setting to lower; any other RuntimeError stays a traceback."""
    from litvit.errors import OutOfResources, out_of_resources

    cpu = RuntimeError(
        "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to "
        "allocate 40000000000 bytes. Error code 12 (Cannot allocate memory)"
    )
    gpu = torch.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 79 GiB"
    )
    assert out_of_resources(cpu) == (
        "out of memory: it tried to allocate 40000000000 bytes",
        "a smaller --batch-size (or --img-size)",
    )
    assert out_of_resources(gpu)[0] == "out of GPU memory: it tried to allocate 20.00 GiB"
    assert out_of_resources(RuntimeError("shape mismatch")) is None and out_of_resources(ValueError("x")) is None
    assert OutOfResources.exit_code == 1 and not OutOfResources.same_on_all_ranks

    out = tmp_path / "run"
    assert main(["train", *FAST, "--output", str(out)]) == 0
    capsys.readouterr()
    from litvit.eval import evaluate as classification  # where `litvit eval` calls the task's evaluate

    def allocate(*args, **kwargs):
        raise cpu

    monkeypatch.setattr(classification, "evaluate", allocate)
    assert main(["eval", "--checkpoint", str(out / "last.pth")]) == 1
    line = one_error_line(capsys, "litvit eval")
    assert line.endswith(
        "out of memory: it tried to allocate 40000000000 bytes: run again with a smaller --batch-size (or --img-size)"
    )
    monkeypatch.setattr(classification, "evaluate", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):
        main(["eval", "--checkpoint", str(out / "last.pth")])


def test_a_torchrun_peer_gone_is_one_line_only_in_a_run_of_several_processes(monkeypatch, capsys):
    """gloo's / NCCL's "the other process is gone" errors are a consequence of another rank's failure (whose own line
    says why): one line under torchrun; in a single process the same text is no collective's and stays a traceback."""
    from litvit.command import run_command
    from litvit.errors import ProcessLeft, another_process_left

    gloo = RuntimeError("[../gloo/transport/tcp/pair.cc:561] Connection closed by peer [127.0.0.1]:5800. This is ...")
    nccl = RuntimeError("NCCL error in: ProcessGroupNCCL.cpp:1970, remote process exited or there was a network error")
    for e in (gloo, nccl):
        assert "another process of the run is gone (torch.distributed: " in another_process_left(e)
    assert another_process_left(RuntimeError("shape mismatch")) is None and another_process_left(OSError("x")) is None
    assert ProcessLeft.exit_code == 1 and not ProcessLeft.same_on_all_ranks

    def fails(_args):
        raise gloo

    with pytest.raises(RuntimeError, match="Connection closed by peer"):
        run_command("litvit train", fails, None)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert run_command("litvit train", fails, None) == 1
    line = capsys.readouterr().err.strip()
    assert line.startswith("litvit train (rank 1): stopped: another process of the run is gone") and "\n" not in line


def test_help_imports_no_torch_and_shows_the_defaults_that_apply():
    """`litvit --help` must be instant: the parsers import no torch / timm (the launcher defers the models)."""
    code = (
        "import sys, litvit_cli; from litvit.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    helptext = subprocess.run(
        [sys.executable, "-c", "import sys, litvit_cli; sys.exit(litvit_cli.main(['train', '--help']))"],
        env=dict(env(), COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    # the defaults of a plain `litvit train` (the nano config), not of litv2_s's ImageNet recipe
    assert "[default: litv2_nano]" in helptext and "training epochs [default: 10]" in helptext
    assert "[default: 64]" in helptext and "[default: 300]" not in helptext
    assert os.path.isfile(ROOT / "src" / "litvit_cli.py")


def test_a_text_file_as_checkpoint_is_one_line_everywhere(tmp_path, capsys):
    notes = tmp_path / "notes.pth"
    notes.write_text("these are notes, not weights\n")
    data = str(make_tree(tmp_path / "data"))
    for argv in (
        ["train", "--resume", str(notes)],
        ["train", "--data", data, "--pretrained", str(notes), *FAST, "--output", str(tmp_path / "run")],
        ["convert", str(notes), str(tmp_path / "out.safetensors")],
    ):
        assert main(argv) == 2, argv
        line = one_error_line(capsys, f"litvit {argv[0]}")
        assert "notes.pth" in line and "not a PyTorch checkpoint" in line, line
    assert not (tmp_path / "run").exists() and not (tmp_path / "out.safetensors").exists()
