"""Checkpoint files that are not checkpoints fail in one line, and every file litvit writes is written atomically
with the permissions of a normal file."""

import errno
import os
import stat
from pathlib import Path

import pytest
import timm
import torch

import litvit  # noqa: F401
from litvit.checkpoint import CheckpointError, atomic_write, read_checkpoint
from litvit.cli import main as cli
from litvit.convert import convert_checkpoint, write_safetensors_atomic
from litvit.errors import CheckpointSaveError, LitvitError

TINY = dict(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), num_classes=10)


def _text(path: Path) -> None:
    path.write_text("epoch 3: loss 0.12\nthis is a log, renamed\n")


def _truncated_zip(path: Path) -> None:
    torch.save({"model": {"w": torch.randn(4000)}}, path)
    path.write_bytes(path.read_bytes()[:3000])


# Each writes one kind of not-a-checkpoint; before, the first gave `KeyError: 101` from torch's unpickler.
BAD_FILES = {
    "text.pth": _text,
    "empty.pth": lambda p: p.write_bytes(b""),
    "random.pth": lambda p: p.write_bytes(bytes(range(256)) * 16),
    "truncated.pth": _truncated_zip,
    "folder.pth": lambda p: p.mkdir(),
    "text.safetensors": _text,
    "empty.safetensors": lambda p: p.write_bytes(b""),
}


def _message_of(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_not_a_checkpoint_is_one_checkpoint_error(tmp_path, name):
    path = tmp_path / name
    BAD_FILES[name](path)
    with pytest.raises(CheckpointError) as excinfo:
        read_checkpoint(path)
    message = _message_of(excinfo)
    assert repr(str(path)) in message
    if name == "folder.pth":
        assert "is a folder, not a checkpoint" in message
    else:
        kind = "safetensors file" if name.endswith(".safetensors") else "PyTorch checkpoint"
        assert f"not a {kind}, or it is truncated or corrupt" in message and "save it again" in message


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_not_a_checkpoint_through_timm(tmp_path, name):
    path = tmp_path / name
    BAD_FILES[name](path)
    with pytest.raises(CheckpointError) as excinfo:
        timm.create_model("litv2_s", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **TINY)
    assert repr(str(path)) in _message_of(excinfo)


def test_convert_reports_a_text_file(tmp_path, capsys):
    path = tmp_path / "notes.pth"
    _text(path)
    assert cli(["convert", str(path), str(tmp_path / "out.safetensors")]) == 2
    assert "not a PyTorch checkpoint" in capsys.readouterr().err


def test_atomic_write_any_writer_and_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "sub" / "model.pth"
        atomic_write(path, lambda tmp: torch.save({"w": torch.ones(3)}, tmp))
        assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(3))
        assert stat.S_IMODE(path.stat().st_mode) == 0o644  # 0666 & ~umask, as open() would create it
        os.umask(0o002)
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(b"new"))
        assert path.read_bytes() == b"new" and stat.S_IMODE(path.stat().st_mode) == 0o664
    finally:
        os.umask(old)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pth"]


def test_convert_writes_a_normal_file(tmp_path):
    """Before, `litvit convert` left a 0600 file (mkstemp's mode) that other users could not read."""
    src = tmp_path / "tiny.pth"
    torch.save(timm.create_model("lit_ti").state_dict(), src)
    old = os.umask(0o022)
    try:
        convert_checkpoint(src, tmp_path / "tiny.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "tiny.safetensors").stat().st_mode) == 0o644


def test_atomic_write_failure_keeps_the_old_file_and_cleans_up(tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(b"old")

    def half_then_full_disk(tmp):
        Path(tmp).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as excinfo:
        atomic_write(path, half_then_full_disk)
    assert excinfo.value.errno == errno.ENOSPC
    assert str(path) in str(excinfo.value) and "No space left on device" in str(excinfo.value)

    def not_allowed(tmp):
        raise PermissionError(errno.EACCES, "Permission denied")

    with pytest.raises(PermissionError):  # the OSError subclass is kept
        atomic_write(path, not_allowed)
    with pytest.raises(ZeroDivisionError):  # any other failure is re-raised as it is
        atomic_write(path, lambda tmp: 1 / 0)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pth"]  # no temporary file left behind


def test_unwritable_destination_is_a_checkpoint_save_error(tmp_path):
    (tmp_path / "afile").write_text("a file where a folder should be")
    with pytest.raises(CheckpointSaveError) as excinfo:
        write_safetensors_atomic({"w": torch.ones(2)}, tmp_path / "afile" / "w.safetensors", {})
    error = excinfo.value
    assert isinstance(error, OSError) and isinstance(error, LitvitError) and error.errno == errno.EEXIST
    assert "w.safetensors" in str(error) and "\n" not in str(error)
