"""The machine a benchmark ran on, for the record: CPU, cores, load, versions, threads, environment, command line.

Timings mean little without it, and a busy machine (other jobs on the same cores) is worth a warning up front.
"""

import datetime
import os
import platform
import shlex
import sys
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence

from ..allocator import allocator_state
from ..cpu import cpu_flags, cpu_model, x86_without_int8_dot_product
from ..runtime import slow_bf16_message

ENV_PREFIXES = ("OMP_", "MKL_", "KMP_", "GOMP_", "DNNL_", "ONEDNN_", "TORCHINDUCTOR_")


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


def int8_warning(device_type: str, runtimes: Iterable[str]) -> Optional[str]:
    """A warning where an int8 runtime is timed on an x86 CPU without VNNI / AMX-INT8 (None elsewhere, and where the
    flags are unknown): there int8 barely beats fp32, and onnxruntime in fp32 was the faster runtime (AVX2-only AMD
    EPYC, 2026-12-05: int8 1.12x LITv2-S eager fp32, onnxruntime fp32 1.18x)."""
    if device_type != "cpu" or not x86_without_int8_dot_product(cpu_flags()) or not any("int8" in r for r in runtimes):
        return None
    return (
        "this CPU has no int8 dot-product instructions (no avx512_vnni / avx_vnni / amx_int8): int8 runs little "
        "faster than fp32 here, with 7-bit activations; compare --runtime onnxruntime"
    )


def slow_bf16_gemm_warning(matmul: Dict[str, Any]) -> Optional[str]:
    """A warning where the run's bf16 matmul probe was slower than its fp32 one (None where it was not, or did not
    run). Seen on an Intel Xeon whose hypervisor hides AMX (family 6 model 207, AVX512-BF16 only): oneDNN's bf16 GEMM
    ran at ~0.6x MKL's fp32 GEMM, so bf16 autocast made GEMM-bound models slower there, not faster."""
    bf16 = matmul.get("bf16")
    if not bf16:
        return None
    message = slow_bf16_message(bf16["gflops_median"] / matmul["gflops_median"])
    return f"{message}; compare the fp32 run too" if message else None


def load_average() -> Optional[List[float]]:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


class CpuTicks(NamedTuple):
    """One reading of the whole machine's CPU ticks since boot (/proc/stat) and of this process's own CPU time."""

    steal: int  # ticks the hypervisor gave to other virtual machines
    total: int  # every tick of every core
    idle: int  # idle + iowait ticks
    own_s: float  # CPU seconds of this process and of the children it has waited for


def cpu_ticks(stat: str = "/proc/stat") -> Optional[CpuTicks]:
    """The machine's CPU ticks (Linux's /proc/stat) with this process's CPU time; None elsewhere."""
    try:
        with open(stat) as f:
            fields = f.readline().split()
        # cpu user nice system idle iowait irq softirq steal [guest guest_nice: already inside user / nice]
        ticks = [int(v) for v in fields[1:9]] if fields[0] == "cpu" else []
    except (OSError, IndexError, ValueError):
        return None
    if len(ticks) != 8:
        return None
    t = os.times()
    return CpuTicks(ticks[7], sum(ticks), ticks[3] + ticks[4], t.user + t.system + t.children_user + t.children_system)


def steal_share(start: Optional[CpuTicks], end: Optional[CpuTicks]) -> Optional[float]:
    """The share of the machine's CPU time that the hypervisor gave to other virtual machines between two
    `cpu_ticks` readings. On a shared VM this is the noise the load average does not show: the guest looks idle
    while its cores wait (a 2-core KVM guest saw 45% stolen during a LITv2-S run, every step ~2x slower)."""
    if start is None or end is None or end.total <= start.total:
        return None
    return max(0.0, (end.steal - start.steal) / (end.total - start.total))


def others_share(start: Optional[CpuTicks], end: Optional[CpuTicks]) -> Optional[float]:
    """The share of the machine's CPU time that other processes of this machine used between two `cpu_ticks`
    readings: busy time (neither idle nor stolen) less this process's own. Measured over the run itself, unlike the
    1-min load average at its start, which still counts the benchmark run just before it."""
    if start is None or end is None or end.total <= start.total:
        return None
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = end.total - start.total
    busy_s = (total - (end.idle - start.idle) - (end.steal - start.steal)) / hz
    return min(1.0, max(0.0, (busy_s - (end.own_s - start.own_s)) / (total / hz)))


STEAL_WARNING = 0.05  # above this share of stolen CPU time, the report warns
OTHERS_WARNING = 0.10  # above this share of CPU time used by other processes, the report warns


def busy_warning(share: Optional[float]) -> Optional[str]:
    """A warning when other processes used more than OTHERS_WARNING of the machine's CPU time during the run."""
    if share is None or share <= OTHERS_WARNING:
        return None
    hint = "" if os.environ.get("OMP_WAIT_POLICY") else "; OMP_WAIT_POLICY=PASSIVE avoids spin-wait collapse"
    return (
        f"machine busy: other processes used {share:.0%} of its CPU time during the run: timings are noisy, compare "
        f"the per-round ratios{hint}"
    )


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
        # the variables that change what runs: threads and their waiting, BLAS dispatch, inductor (max-autotune, ...)
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIXES)},
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "threads": threads,
        "allocator": allocator_state(),
        "device": str(device),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
        "litvit": litvit_version,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info
