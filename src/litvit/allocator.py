"""Keep freed memory in the process instead of handing it back to the kernel (glibc's malloc, Linux).

Why: glibc serves every allocation above its mmap threshold (at most 32 MiB by default) with a fresh `mmap` and
returns it with `munmap` when freed. A CPU training step allocates its large activations and gradients anew each
step (LITv2-S, batch 16: the stage-1 hidden map alone is 77 MB), so every step pays one page fault per 4 KiB page
and the kernel's zeroing of it: on a 2-core Xeon (family 6 model 207, torch 2.14.1) GELU over that map took 29 ms
from a fresh allocation and 10 ms from reused memory, the depthwise conv 35 vs 13 ms. Raising the mmap threshold
and the trim threshold keeps freed blocks in the heap for the next step, as jemalloc or tcmalloc (the allocators
Intel's PyTorch CPU guides preload) do by design, with no library to install. The peak stays about the same (LITv2-S
training, batch 16: 2851-2854 MB peak RSS without, 2862-3021 MB with, in four runs); the process just does not shrink
after it (docs/performance.md, "Speed work").

The `litvit` commands call `keep_freed_memory()` at start; `LITVIT_KEEP_FREED_MEMORY=0` leaves malloc as it is.
Library users who want it call it themselves: it changes the whole process, so importing litvit does not.
"""

import ctypes
import os
import platform
from typing import Optional

__all__ = ["ENV_VAR", "GLIBC_MMAP_CEILING", "MMAP_THRESHOLD", "allocator_state", "keep_freed_memory", "mmap_threshold"]

ENV_VAR = "LITVIT_KEEP_FREED_MEMORY"
MMAP_THRESHOLD = 1 << 30  # blocks above 1 GiB still come from mmap
GLIBC_MMAP_CEILING = 32 << 20  # glibc's dynamic mmap threshold never rises above this (DEFAULT_MMAP_THRESHOLD_MAX)
_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: keep up to 2 GiB free at the heap's top
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h> parameter numbers

_state: Optional[str] = None  # what keep_freed_memory last did, for allocator_state()
_kept = False  # keep_freed_memory took effect in this process


def _glibc() -> Optional[ctypes.CDLL]:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def keep_freed_memory(enable: Optional[bool] = None) -> bool:
    """Raise glibc's mmap and trim thresholds so freed memory is reused; True where that took effect.

    `enable` None reads `LITVIT_KEEP_FREED_MEMORY` (on unless it is 0 / false / off). Elsewhere than glibc on Linux
    (macOS, Windows, musl) nothing changes and it returns False. Calling it again is harmless; it cannot be undone
    within the process (glibc has no "back to the dynamic threshold")."""
    global _state, _kept
    if enable is None:
        enable = os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "false", "off", "no")
    if not enable:
        _state = _state or f"malloc as it was ({ENV_VAR}=0)"
        return False
    libc = _glibc()
    if libc is None:
        _state = "the platform's malloc (not glibc)"
        return False
    ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1
    _state = "glibc, freed memory kept for reuse (litvit.allocator)" if ok else "glibc, mallopt refused"
    _kept = _kept or ok
    return ok


def mmap_threshold() -> int:
    """Bytes above which a block gets a fresh mmap, page-faulted in at its first write: `MMAP_THRESHOLD` once
    `keep_freed_memory()` took effect in this process, glibc's 32 MiB ceiling otherwise (assumed for other mallocs
    too). `layers.batch_slices` slices a large batch only where its maps would be that large."""
    return MMAP_THRESHOLD if _kept else GLIBC_MMAP_CEILING


def allocator_state() -> str:
    """One phrase for a benchmark's header: what this process's malloc does with freed memory."""
    return _state or "malloc's default (litvit.allocator.keep_freed_memory not called)"
