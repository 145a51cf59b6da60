"""The CPU's model name and feature flags, from /proc/cpuinfo (no torch): benchmarks record them, and the int8 and
bf16 paths depend on them (VNNI, AVX512-BF16, AMX)."""

import platform
from typing import List, Optional

__all__ = ["cpu_flags", "cpu_model"]


def _cpuinfo(field: str) -> Optional[str]:
    """The first /proc/cpuinfo line's value for `field` ('model name', 'flags'); None where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_flags() -> List[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo has none)."""
    return (_cpuinfo("flags") or "").split()
