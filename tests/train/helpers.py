"""Small image trees, fast training flags and subprocess helpers for the train / eval tests."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

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


def env(threads: int = 1, gpu: bool = False) -> Dict[str, str]:
    """The environment of a test's subprocess: `threads` threads, src/ importable and, unless `gpu`, no GPU visible
    (these are CPU tests, which compare runs bit for bit; tests/gpu has the GPU's, on a machine that has one)."""
    e = dict(os.environ)
    e.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    if not gpu:
        e["CUDA_VISIBLE_DEVICES"] = ""
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), e.get("PYTHONPATH", "")])
    return e


def run_module(module: str, args: List[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout
    )


def torchrun(
    module: str, args: List[str], cwd: Path, nproc: int = 2, timeout: float = 240, gpu: bool = False
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
    proc = subprocess.Popen(cmd, cwd=cwd, env=env(gpu=gpu), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except (
        subprocess.TimeoutExpired
    ):  # a hung run: its ranks too (each in its own session, torchrun's kill misses them)
        for pid in _children(proc.pid):
            os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _children(pid: int) -> List[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


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


def start(cmd: List[str], cwd: Path, **kwargs: Any) -> subprocess.Popen:
    """`cmd` running in the background, stdout and stderr together as text lines."""
    return subprocess.Popen(
        cmd, cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, **kwargs
    )


def signal_when(cmd: List[str], cwd: Path, line: str, sig: int, group: bool, timeout: float = 180) -> Tuple[int, str]:
    """Run `cmd` in a session of its own and send it `sig` once it prints `line` (to its whole process group if
    `group`, as a terminal's Ctrl-C; else to its process alone); returns (exit status, everything it printed)."""
    stopped = start(cmd, cwd, start_new_session=True)
    seen = []
    for text in stopped.stdout:
        seen.append(text)
        if line in text:
            (os.killpg if group else os.kill)(stopped.pid, sig)
            break
    seen += stopped.stdout.readlines()
    stopped.wait(timeout=timeout)
    return stopped.returncode, "".join(seen)


def kill_then_resume(args: List[str], cwd: Path, kill_at: str, save_every: int, timeout: float = 180) -> dict:
    """Run `litvit train ARGS` twice side by side: into cwd/a left alone, and into cwd/b saving every `save_every`
    steps and killed with SIGKILL once it logs a save at `kill_at` (e.g. '(epoch 2, step 3/12'); then resume b.
    Returns b's progress at the kill. The resumed run must say where it resumed."""
    cmd = [sys.executable, "-m", "litvit.train", *args]
    popen: Dict[str, Any] = dict(cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    straight = subprocess.Popen([*cmd, "--output", str(cwd / "a")], **popen)
    saving = ["--save-every-steps", str(save_every), "--output", str(cwd / "b")]
    killed = subprocess.Popen([*cmd, *saving], bufsize=1, **popen)
    seen = []
    for line in killed.stdout:
        seen.append(line)
        if "saved" in line and kill_at in line:
            os.kill(killed.pid, signal.SIGKILL)
            break
    killed.wait(timeout=timeout)
    assert killed.returncode == -signal.SIGKILL, "".join(seen)
    out_a, _ = straight.communicate(timeout=timeout)
    assert straight.returncode == 0, out_a
    b = cwd / "b"
    interrupted = load(b / "last.pth")["progress"]
    resumed = run_module("litvit.train", ["--resume", str(b)], cwd=cwd, timeout=timeout)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {b / 'last.pth'} at epoch 2, step {interrupted['batch']}" in resumed.stdout
    return interrupted


def assert_same_runs(a: Path, b: Path, updates: int, metric_keys: Sequence[str], ema: bool = False) -> None:
    """Runs a and b end with equal weights (and EMA), optimizer and scheduler state, and per-epoch metrics."""
    end_a, end_b = load(a / "last.pth"), load(b / "last.pth")
    assert end_b["progress"]["update"] == end_a["progress"]["update"] == updates
    assert_same_tensors(end_a["model"], end_b["model"], "model: ")
    if ema:
        assert_same_tensors(end_a["model_ema"], end_b["model_ema"], "EMA: ")
    assert_same_tensors(optimizer_tensors(end_a["optimizer"]), optimizer_tensors(end_b["optimizer"]), "optimizer: ")
    assert end_a["scheduler"] == end_b["scheduler"]
    metrics_a = [json.loads(x) for x in (a / "metrics.jsonl").read_text().splitlines()]
    metrics_b = [json.loads(x) for x in (b / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics_b] == [m["epoch"] for m in metrics_a] == [1, 2]
    for ma, mb in zip(metrics_a, metrics_b):
        for key in ("step", "train_loss", "lr", *metric_keys):
            assert ma[key] == mb[key], key
