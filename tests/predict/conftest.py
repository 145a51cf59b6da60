"""Shared pieces of the predict tests: a litv2_nano trained for one epoch on the embedded digits (~92% val top-1
in ~8 s on one core), and val digits saved as PNG files whose true class is in their name."""

import contextlib
import io
from pathlib import Path

import pytest

from litvit.cli import main
from litvit.data.digits import DigitsDataset


@pytest.fixture(scope="package")
def digits_checkpoint(tmp_path_factory) -> Path:
    """best.pth of `litvit train` (litv2_nano on the digits) shortened to one epoch."""
    out = tmp_path_factory.mktemp("predict-run") / "run"
    argv = ["train", "--epochs", "1", "--warmup-epochs", "0", "--threads", "1", "--no-progress", "--output", str(out)]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(argv) == 0
    return out / "best.pth"


@pytest.fixture(scope="package")
def digit_pngs(tmp_path_factory) -> Path:
    """Two val images of each digit as <n>_<digit>.png (32 x 32 RGB, as the run validated on)."""
    folder = tmp_path_factory.mktemp("digits-png")
    ds = DigitsDataset("val")
    taken = {d: 0 for d in range(10)}
    for i, (img, digit) in enumerate(zip(ds.images, ds.targets)):
        if taken[digit] < 2:
            taken[digit] += 1
            img.save(folder / f"{i:03d}_{digit}.png")
    return folder
