"""The dense training targets on a CPU: `litvit train --task det` and `--task seg` with no --data (the embedded
scenes, configs scenes_det / scenes_seg), each given a wall-clock budget; reports the best validation score reached
within it and when the target was first met (bbox mAP@[.5:.95] >= 50, mIoU >= 70, in percent).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/dense_targets.py --threads 2 --minutes 10 --out out/dense_targets
    OMP_WAIT_POLICY=PASSIVE python benchmarks/dense_targets.py --procs 2 --threads 1   # two DDP processes (torchrun)

Each run is its own `litvit train` process (or torchrun group), stopped when its budget is spent (the epochs
validated by then count); results.json and one line per task on stdout. Extra arguments go to both runs (e.g.
--epochs 20). With --procs N each process takes the config's batch / N, so the total batch and the recipe stay
the same: on 2 cores, two processes of one thread each train these small models faster than one process of two
threads (docs/dense.md).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

TARGETS = {"det": ("val_bbox_mAP", 50.0), "seg": ("val_mIoU", 70.0)}


def command(task: str, procs: int, extra: List[str]) -> List[str]:
    """`python -m litvit.train` or, for procs > 1, the same under torchrun with the config's batch split."""
    if procs == 1:
        return [sys.executable, "-m", "litvit.train"]
    from litvit.train.config import load_yaml

    batch = load_yaml(f"scenes_{task}")["batch_size"]
    if batch % procs and "--batch-size" not in extra:
        raise SystemExit(f"the scenes_{task} batch ({batch}) does not split over {procs} processes: pass --batch-size")
    per_rank = [] if "--batch-size" in extra else ["--batch-size", str(batch // procs)]
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)]
    return [*run, "-m", "litvit.train", *per_rank]


def run_one(task: str, out: Path, threads: str, minutes: float, procs: int, extra: List[str]) -> Dict[str, Any]:
    key, target = TARGETS[task]
    folder = out / task
    cmd = [*command(task, procs, extra), "--task", task, "--threads", threads, "--no-progress"]
    cmd += ["--output", str(folder), "--target-top1", str(target), *extra]
    t0 = time.time()
    with open(out / f"{task}.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=minutes * 60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # torchrun's workers too
            proc.wait()
            rc = None
    wall = time.time() - t0
    rows = []
    metrics = folder / "metrics.jsonl"
    if metrics.is_file():
        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    met = [r for r in rows if r.get(key, -1) >= target]
    best = max(rows, key=lambda r: r.get(key, -1)) if rows else None
    return {
        "task": task,
        "metric": key,
        "target": target,
        "budget_s": minutes * 60,
        "procs": procs,
        "threads": threads,
        "wall_s": round(wall, 1),
        "finished": rc == 0,
        "epochs_validated": len(rows),
        "best": best.get(key) if best else None,
        "best_epoch": best["epoch"] if best else None,
        "best_elapsed_s": best["elapsed_s"] if best else None,
        "target_met_at_s": met[0]["elapsed_s"] if met else None,
        "curve": [(r["epoch"], r.get(key), r["elapsed_s"]) for r in rows],
    }


def main(argv: List[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", default="2")
    p.add_argument("--procs", type=int, default=1, help="DDP processes (torchrun) [default: 1]")
    p.add_argument("--minutes", type=float, default=10.0, help="wall-clock budget of each run [default: 10]")
    p.add_argument("--tasks", nargs="+", choices=tuple(TARGETS), default=list(TARGETS))
    p.add_argument("--out", type=Path, default=Path("out/dense_targets"))
    args, extra = p.parse_known_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    results = [run_one(task, args.out, args.threads, args.minutes, args.procs, extra) for task in args.tasks]
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    for r in results:
        met = f"target met at {r['target_met_at_s']:.0f}s" if r["target_met_at_s"] is not None else "target NOT met"
        best = "no epoch validated" if r["best"] is None else f"best {r['best']:.1f} (epoch {r['best_epoch']})"
        print(f"{r['task']}: {r['metric']} >= {r['target']:g}: {met}; {best}; {r['wall_s']:.0f}s wall", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
