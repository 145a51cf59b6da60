"""The machine a benchmark ran on, for the record: CPU, cores, load, versions, threads, environment, command line.

Timings mean little without it, and a busy machine (other jobs on the same cores) is worth a warning up front.
"""

import datetime
import os
import platform
import shlex
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..cpu import cpu_flags, cpu_model


def native_bf16() -> Optional[bool]:
    """Whether the CPU computes in bf16 natively (AVX512-BF16 or AMX-BF16); None where the flags are unknown. Without
    it oneDNN emulates bf16 and autocast runs many times slower than fp32 (~10x on an AVX2-only AMD EPYC)."""
    flags = cpu_flags()
    if not flags:
        return None
    return "avx512_bf16" in flags or "amx_bf16" in flags


def bf16_warning(device_type: str, dtype: Optional[str]) -> Optional[str]:
    if device_type != "cpu" or dtype != "bf16" or native_bf16() is not False:
        return None
    return "this CPU has no native bf16 (no avx512_bf16 / amx_bf16): bf16 autocast is emulated, far slower than fp32"


def load_average() -> Optional[List[float]]:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def cpu_ticks(stat: str = "/proc/stat") -> Optional[Tuple[int, int]]:
    """(stolen, total) CPU ticks of the whole machine since boot, from Linux's /proc/stat; None elsewhere."""
    try:
        with open(stat) as f:
            fields = f.readline().split()
        # cpu user nice system idle iowait irq softirq steal [guest guest_nice: already inside user / nice]
        ticks = [int(v) for v in fields[1:9]] if fields[0] == "cpu" else []
    except (OSError, IndexError, ValueError):
        return None
    return (ticks[7], sum(ticks)) if len(ticks) == 8 else None


def steal_share(start: Optional[Tuple[int, int]], end: Optional[Tuple[int, int]]) -> Optional[float]:
    """The share of the machine's CPU time that the hypervisor gave to other virtual machines between two
    `cpu_ticks` readings. On a shared VM this is the noise the load average does not show: the guest looks idle
    while its cores wait (a 2-core KVM guest saw 45% stolen during a LITv2-S run, every step ~2x slower)."""
    if start is None or end is None or end[1] <= start[1]:
        return None
    return max(0.0, (end[0] - start[0]) / (end[1] - start[1]))


STEAL_WARNING = 0.05  # above this share of stolen CPU time, the report warns


def busy_warning(threads: int) -> Optional[str]:
    """A warning when other processes keep the CPU busy (1-min load average + our threads > cores)."""
    load, cores = load_average(), os.cpu_count() or 1
    if load is None or load[0] + threads <= cores + 0.5:
        return None
    hint = "" if os.environ.get("OMP_WAIT_POLICY") else "; OMP_WAIT_POLICY=PASSIVE avoids spin-wait collapse"
    return f"machine busy (1-min load {load[0]:.2f} on {cores} cores, {threads} threads here): timings are noisy{hint}"


def command_line(argv: Optional[Sequence[str]] = None) -> str:
    """The command as typed: `litvit ...` for the entry point, `python PATH ...` for scripts (path made relative)."""
    args = list(sys.argv if argv is None else argv)
    if not args:
        return ""
    if os.path.basename(args[0]) == "litvit":
        args[0] = "litvit"
    elif args[0].endswith(".py"):
        rel = os.path.relpath(args[0])
        args[0] = "python " + (rel if not rel.startswith("..") else args[0])
    return " ".join([args[0]] + [shlex.quote(a) for a in args[1:]])


def machine_info(device: Any, threads: int) -> Dict[str, Any]:
    """The record's `machine` entry (torch.device `device`)."""
    import timm
    import torch

    from .. import __version__ as litvit_version

    info: Dict[str, Any] = {
        "cpu": cpu_model(),
        "native_bf16": native_bf16() if device.type == "cpu" else None,
        "cores": os.cpu_count(),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_end": load_average(),
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(("OMP_", "MKL_", "KMP_", "GOMP_"))},
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "threads": threads,
        "device": str(device),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
        "litvit": litvit_version,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info
