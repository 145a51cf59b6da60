"""Peak memory, measured in fresh processes: the counters a child reads, and the parent's side that runs children.

Each subject runs in its own `python -m litvit.bench._child SPEC_JSON`, so that its peak is its own and not the
benchmark's (which holds every model at once); the `baseline` child builds nothing, and its peak is what every child
pays for importing torch + timm + litvit.
"""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Sequence, Tuple

MB = 1024.0**2


def _status_bytes(field: str) -> Optional[int]:
    """A size from /proc/self/status (Linux): 'VmRSS' (resident now) or 'VmHWM' (the peak since exec or the last
    `reset_peak_rss`); None where it cannot be read."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def ru_maxrss_bytes() -> int:
    """getrusage(RUSAGE_SELF).ru_maxrss in bytes, as the kernel reports it (see `peak_rss_bytes`)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # bytes on macOS, kilobytes on Linux


def current_rss_bytes() -> int:
    """Resident set size now (Linux /proc; falls back to the peak where /proc is missing)."""
    rss = _status_bytes("VmRSS")
    return rss if rss is not None else ru_maxrss_bytes()


def peak_rss_bytes() -> int:
    """This process's peak RSS in bytes, at least its current RSS (the kernel updates the peak lazily).

    On Linux this is VmHWM, the counter behind getrusage's ru_maxrss, but of this process image only: ru_maxrss
    also keeps the peak of the address space a fork copied from the parent before exec (a fresh child of a
    benchmark holding 3 GB reports 3 GB). Elsewhere, ru_maxrss.
    """
    hwm = _status_bytes("VmHWM")
    return max(hwm if hwm is not None else ru_maxrss_bytes(), _status_bytes("VmRSS") or 0)


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux >= 4.0: /proc/self/clear_refs); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def available_bytes() -> Optional[int]:
    """Memory the kernel can give without swapping (Linux MemAvailable); None where /proc/meminfo cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def run_child(spec: Dict[str, Any], timeout: float = 1800.0) -> Dict[str, Any]:
    """Run `python -m litvit.bench._child SPEC_JSON` in a fresh process; return its JSON report."""
    cmd = [sys.executable, "-m", "litvit.bench._child", json.dumps(spec)]
    env = dict(os.environ)
    if spec.get("threads"):
        env["OMP_NUM_THREADS"] = str(spec["threads"])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"memory child failed (exit {proc.returncode}): {tail}"}
    return json.loads(lines[-1])


def measure_children(
    specs: Sequence[Dict[str, Any]], run: Dict[str, Any], jobs: int = 2
) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """The baseline child's report and one memory row per subject spec, `jobs` processes at a time (each process's
    peak RSS is its own, so they may overlap). `run` holds the settings every child shares (batch_size, dtype, ...)."""
    baseline_spec = {"kind": "baseline", "device": run["device"], "threads": run["threads"]}
    children = [baseline_spec] + [{**run, **spec, "iters": 2} for spec in specs]  # a spec's own dtype wins
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        baseline, *reports = pool.map(run_child, children)
    base_rss = baseline.get("peak_rss_bytes")
    return baseline, [memory_row(rep, base_rss, run["batch_size"]) for rep in reports]


def memory_row(rep: Dict[str, Any], base_rss: Optional[int], batch: int) -> Dict[str, Any]:
    """A child's report in MB: its peak, above the baseline, and what the steps added per image."""
    if "error" in rep:
        return {"error": rep["error"]}
    row: Dict[str, Any] = {"raw": rep, "peak_rss_mb": rep["peak_rss_bytes"] / MB}
    if base_rss:
        row["baseline_rss_mb"] = base_rss / MB
        row["over_baseline_mb"] = (rep["peak_rss_bytes"] - base_rss) / MB
    # The peak while the measured steps ran (import transients excluded), and what the steps added to the built
    # subject per image (activations; in train mode also gradients and the optimizer state, created at step 1).
    step_peak = rep.get("step_peak_bytes")
    if step_peak is not None:
        row["running_peak_mb"] = step_peak / MB
        row["step_rss_per_image_mb"] = max(0, step_peak - rep["rss_built_bytes"]) / MB / batch
    if rep.get("cuda_peak_bytes") is not None:
        row["cuda_peak_mb"] = rep["cuda_peak_bytes"] / MB
        row["cuda_step_per_image_mb"] = max(0, rep["cuda_peak_bytes"] - rep["cuda_built_bytes"]) / MB / batch
    return row
