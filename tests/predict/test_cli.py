"""`litvit predict` on the command line: the table, the warning lines, one-line errors with exit status 2, a help
that imports no torch, and how arguments become files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

from litvit.cli import main
from litvit.errors import ConfigError, DataError, DataNotFoundError
from litvit.predict.inputs import expand_inputs
from litvit.predict.output import PATH_WIDTH

SRC = Path(__file__).resolve().parents[2] / "src"


def test_table_output_file_and_warning_lines(digits_checkpoint, digit_pngs, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_text("not a png")
    out = tmp_path / "preds.jsonl"
    argv = ["predict", str(digit_pngs), str(bad), "--checkpoint", str(digits_checkpoint), "--top-k", "2"]
    assert main([*argv, "--output", str(out), "--no-progress"]) == 0
    stdout, stderr = capsys.readouterr()
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 20 and stdout.splitlines()[0].split() == ["image", "prob", "class"]
    # each image's path, its end kept where it is longer than the table's column (as under pytest-xdist's tmp dirs)
    assert len(stdout.splitlines()) == 1 + 2 * 20 and all(r["path"][3 - PATH_WIDTH :] in stdout for r in records)
    warnings = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and str(bad) in warnings[0]
    assert stderr.splitlines()[-1].startswith("litvit predict: 20 image(s)")
    assert "img/s" not in stderr and "20/20" not in stderr  # no bar: stderr is not a terminal here
    assert main([*argv, "--quiet", "--progress"]) == 0
    stdout, stderr = capsys.readouterr()
    assert stdout == "" and "predict:" in stderr and "img/s" in stderr
    assert f"\rwarning: skipped {bad} " in stderr  # the bar cleared first, not written into it


@pytest.fixture(scope="module")
def other_model_file(tmp_path_factory):
    """An official-layout file of a 6-class litv2_nano (not the digits run's model)."""
    path = tmp_path_factory.mktemp("other") / "nano6.pth"
    torch.save({"model": timm.create_model("litv2_nano", num_classes=6).state_dict()}, path)
    return path


@pytest.mark.parametrize(
    "argv, says",
    [
        (["{png}/none-*.png", "--checkpoint", "{ckpt}"], "matches no file"),
        (["{png}/missing.png", "--checkpoint", "{ckpt}"], "does not exist"),
        (["{empty}", "--checkpoint", "{ckpt}"], "holds no image files"),
        (["{png}", "--checkpoint", "{ckpt}", "--top-k", "0"], "--top-k must be an integer >= 1"),
        (["{png}", "--checkpoint", "{ckpt}", "--batch-size", "0"], "--batch-size must be"),
        (["{png}", "--model", "litv2_nanoo", "--random-weights"], "unknown model 'litv2_nanoo'"),
        (["{png}", "--random-weights"], "pass --model NAME"),
        (["{png}", "--model", "lit_ti", "--checkpoint", "{ckpt}"], "holds a litv2_nano trained by litvit"),
        (["{png}", "--model", "lit_ti", "--checkpoint", "{other}"], "does not fit"),
        (["{png}", "--checkpoint", "{png}/missing.pth"], "does not exist"),
        (["{png}", "--checkpoint", "{ckpt}", "--output", "{tmp}/preds.txt"], ".jsonl or .csv"),
        (["{png}", "--checkpoint", "{ckpt}", "--output", "{tmp}"], ".jsonl or .csv"),
        (["{png}", "--checkpoint", "{ckpt}", "--precision", "fp16", "--device", "cpu"], "fp16 autocast needs a GPU"),
        (["{png}", "--checkpoint", "{ckpt}", "--device", "tpu"], "device 'tpu'"),
        (["{png}", "--checkpoint", "{ckpt}", "--img-size", "16"], "too small"),
        (["{png}", "--model", "resnet18", "--random-weights", "--img-size", "64"], "drop --img-size"),
        (["{png}", "--checkpoint", "{ckpt}", "--img-size", "-3"], "--img-size must be a whole number of pixels"),
        (["{png}", "--model", "litv2_nano", "--random-weights", "--img-size", "100000"], "from 1 to 4096"),
    ],
)
def test_errors_are_one_line_with_exit_status_2(
    argv, says, digits_checkpoint, digit_pngs, other_model_file, tmp_path, capsys
):
    (tmp_path / "empty").mkdir()
    names = dict(png=digit_pngs, ckpt=digits_checkpoint, other=other_model_file, tmp=tmp_path, empty=tmp_path / "empty")
    filled = [a.format(**names) for a in argv]
    assert main(["predict", *filled]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    lines = [line for line in lines if not line.startswith("warning: --random-weights")]
    assert len(lines) == 1 and lines[0].startswith("litvit predict: ") and says in lines[0], (filled, err)
    assert out == "" and not list(tmp_path.glob("*.txt"))


def test_help_imports_no_torch():
    code = (
        "import sys\n"
        "sys.modules['torch'] = sys.modules['timm'] = sys.modules['torchvision'] = None  # any import fails\n"
        "import litvit_cli\n"
        "try:\n"
        "    litvit_cli.main(['predict', '--help'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]), COLUMNS="120")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "usage: litvit predict" in done.stdout and "--top-k" in done.stdout and "--precision" in done.stdout


def test_arguments_become_files_in_a_stable_order(tmp_path):
    (tmp_path / "b" / "deep").mkdir(parents=True)
    (tmp_path / "b" / ".hidden").mkdir()
    for name in ("b/2.png", "b/10.JPG", "b/deep/1.webp", "b/.hidden/x.png", "b/.dot.png", "b/notes.txt", "a.png"):
        (tmp_path / name).write_bytes(b"")
    b = tmp_path / "b"
    assert expand_inputs(b) == [str(b / "10.JPG"), str(b / "2.png"), str(b / "deep" / "1.webp")]
    # a file met twice keeps its first place; a pattern matching a folder takes the folder's images
    got = expand_inputs([str(b / "2.png"), str(tmp_path / "*"), str(b / "notes.txt")])
    assert got == [
        str(b / "2.png"),
        str(tmp_path / "a.png"),
        str(b / "10.JPG"),
        str(b / "deep" / "1.webp"),
        str(b / "notes.txt"),
    ]
    assert expand_inputs(str(tmp_path / "**" / "*.webp")) == [str(b / "deep" / "1.webp")]
    with pytest.raises(DataNotFoundError, match="matches no file"):
        expand_inputs(str(tmp_path / "*.gif"))
    with pytest.raises(DataError, match="no input given"):
        expand_inputs([])
    assert expand_inputs(p for p in [b / "2.png"]) == [str(b / "2.png")]  # any iterable of paths


@pytest.mark.parametrize("bad", [123, None, [b"a.png"], ["a.png", 3]])
def test_inputs_that_are_not_paths_are_one_error(bad):
    with pytest.raises(ConfigError, match="inputs must be paths or glob patterns"):
        expand_inputs(bad)


def test_ctrl_c_keeps_the_predictions_done_in_the_output_file(
    digits_checkpoint, digit_pngs, tmp_path, capsys, monkeypatch
):
    """An hours-long `predict FOLDER --output` stopped by Ctrl-C wrote nothing: now the images done are written."""
    from litvit.predict import run

    real, calls = run.top_classes, []

    def interrupted_at_the_third_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(run, "top_classes", interrupted_at_the_third_batch)
    out = tmp_path / "preds.csv"
    argv = ["predict", str(digit_pngs), "--checkpoint", str(digits_checkpoint), "--batch-size", "4", "--no-progress"]
    assert main([*argv, "--output", str(out)]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"litvit predict: interrupted after 8 of 20 image(s): their predictions are in {out}"]
    assert len(out.read_text().splitlines()) == 1 + 8 * 5  # a header, then top-5 rows of the 8 images done
    calls.clear()
    assert main(argv) == 130  # no --output: nothing to keep, the plain interruption
    assert "litvit predict: interrupted" in capsys.readouterr().err


def test_a_full_disk_writing_the_output_is_one_line(digits_checkpoint, digit_pngs, tmp_path, capsys, monkeypatch):
    import errno

    from litvit import checkpoint

    def full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "atomic_write", full)
    out = tmp_path / "preds.csv"
    argv = ["predict", str(digit_pngs), "--checkpoint", str(digits_checkpoint), "--no-progress", "--output", str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"litvit predict: cannot write {out} (No space left on device): pass --output a path in a writable "
        "folder (or free space)"
    ]
    assert not out.exists()
