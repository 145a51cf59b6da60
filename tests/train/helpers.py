"""Small image trees, fast training flags and subprocess helpers for the train / eval tests."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).parents[2]

# Tiny, fast runs: litv2_nano at 32 px, one thread, no warmup, a couple of epochs.
FAST = [
    "--threads",
    "1",
    "--warmup-epochs",
    "0",
    "--epochs",
    "1",
    "--batch-size",
    "4",
    "--workers",
    "0",
    "--no-progress",
]


def make_tree(
    root: Path,
    classes: Sequence[str] = ("cat", "dog", "emu"),
    per_class: Dict[str, int] = None,  # type: ignore[assignment]
    size: int = 32,
    seed: int = 0,
    fmt: str = "png",
) -> Path:
    """root/{train,val}/<class>/<i>.<fmt> with random RGB images (train: per_class['train'], val: ['val'])."""
    per_class = per_class or {"train": 8, "val": 3}
    rng = np.random.default_rng(seed)
    for split, n in per_class.items():
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = rng.integers(0, 256, (size + int(rng.integers(0, 9)), size, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{i}.{fmt}")
    return root


def env(threads: int = 1) -> Dict[str, str]:
    e = dict(os.environ)
    e.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), e.get("PYTHONPATH", "")])
    return e


def run_module(module: str, args: List[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout
    )


def torchrun(
    module: str, args: List[str], cwd: Path, nproc: int = 2, timeout: float = 240
) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        "-m",
        module,
        *args,
    ]
    return subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_tensors(a: dict, b: dict, what: str = "") -> None:
    assert a.keys() == b.keys(), what
    for k in a:
        assert torch.equal(a[k], b[k]), f"{what}{k} differs"


def optimizer_tensors(opt_state: dict) -> Optional[Dict[str, torch.Tensor]]:
    out = {}
    for pid, st in opt_state["state"].items():
        for name, t in st.items():
            if isinstance(t, torch.Tensor):
                out[f"{pid}.{name}"] = t
    return out
