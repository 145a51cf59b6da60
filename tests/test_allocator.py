"""litvit.allocator: freed memory is reused (no page faults on a later step's buffers), and only where asked."""

import platform
import subprocess
import sys
import textwrap

import pytest

from litvit import allocator

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Allocates, fills and frees a 64 MiB tensor eight times; prints the minor page faults of each of the last five (the
# first ones settle the heap: torch asks for 64-byte aligned blocks, so one freed block of the exact size may not do).
_PROBE = textwrap.dedent(
    """
    import resource, sys
    import torch
    from litvit.allocator import keep_freed_memory
    applied = keep_freed_memory() if sys.argv[1] == "keep" else False
    faults = []
    for _ in range(8):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.empty(16 << 20).fill_(1.0)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(applied, *faults[3:])
    """
)


def _late_allocation_faults(mode: str) -> tuple:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True).stdout
    applied, *faults = out.split()
    return applied == "True", sorted(int(f) for f in faults)


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_kept_memory_is_reused_without_page_faults():
    applied, kept = _late_allocation_faults("keep")
    _, default = _late_allocation_faults("default")
    assert applied
    pages = (64 << 20) // 4096
    assert min(default) > pages // 2, f"glibc's default should map each 64 MiB block afresh ({default} faults)"
    assert kept[2] < pages // 20, f"freed blocks should be reused, not faulted in again ({kept} faults)"


def test_env_var_turns_it_off(monkeypatch):
    monkeypatch.setattr(allocator, "_state", None)
    monkeypatch.setenv(allocator.ENV_VAR, "0")
    assert allocator.keep_freed_memory() is False
    assert f"{allocator.ENV_VAR}=0" in allocator.allocator_state()


def test_other_platforms_change_nothing(monkeypatch):
    monkeypatch.setattr(allocator, "_state", None)
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    assert allocator.keep_freed_memory(True) is False
    assert "not glibc" in allocator.allocator_state()


class _FakeLibc:
    def __init__(self, result: int):
        self.result = result

    def mallopt(self, param: int, value: int) -> int:
        return self.result


@pytest.mark.parametrize(
    "mallopt_result, threshold", [(1, allocator.MMAP_THRESHOLD), (0, allocator.GLIBC_MMAP_CEILING)]
)
def test_mmap_threshold_follows_what_took_effect(monkeypatch, mallopt_result, threshold):
    """The batch slices (layers.batch_slices) size themselves by this: raised only where mallopt accepted it."""
    monkeypatch.setattr(allocator, "_state", None)
    monkeypatch.setattr(allocator, "_kept", False)
    assert allocator.mmap_threshold() == allocator.GLIBC_MMAP_CEILING
    monkeypatch.setattr(allocator, "_glibc", lambda: _FakeLibc(mallopt_result))
    assert allocator.keep_freed_memory(True) is bool(mallopt_result)
    assert allocator.mmap_threshold() == threshold
    assert allocator.keep_freed_memory(False) is False  # turning it off later cannot undo it: the threshold stays
    assert allocator.mmap_threshold() == threshold
