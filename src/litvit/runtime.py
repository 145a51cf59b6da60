"""Where and how a command runs: device, precision, CPU threads and torchrun / DDP processes.

One module for `litvit train`, `litvit eval` and `litvit bench`, so that every command speaks one vocabulary:

* device: `auto` (CUDA when available, else CPU), `cpu`, `cuda` or `cuda:N`;
* precision: `fp32` (alias `off`), `bf16`, `fp16` (autocast, weights stay fp32, as in the papers) or `auto` (bf16 on
  GPUs that have it, else fp16; fp32 on CPU);
* threads: torch's intra-op threads (None leaves torch's choice);
* processes: the group torchrun set up (RANK / WORLD_SIZE / LOCAL_RANK), nccl on GPUs, gloo on CPUs.
"""

import contextlib
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, List, Optional

import torch
import torch.distributed as dist

from .errors import ConfigError
from .options import PRECISIONS

__all__ = [
    "PRECISIONS",
    "DistInfo",
    "all_gather_object",
    "all_reduce_sum",
    "autocast",
    "autocast_dtype",
    "barrier",
    "broadcast_buffers",
    "broadcast_object",
    "cleanup",
    "init_distributed",
    "precision_name",
    "resolve_device",
    "seed_all",
    "set_threads",
    "synchronizer",
]


def resolve_device(device: Optional[str] = "auto", local_rank: int = 0) -> torch.device:
    """'auto' / None (CUDA when available, else CPU), 'cpu', 'cuda' (this process's GPU under torchrun) or 'cuda:N'."""
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise ConfigError(f"unsupported device {device!r}: use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}, but no CUDA device is available: use cpu (or auto)")
    count = torch.cuda.device_count()
    if dev.index is None:
        return torch.device("cuda", local_rank % max(1, count))
    if dev.index >= count:
        raise ConfigError(f"device {device!r}: only {count} CUDA device(s); use cuda:0 .. cuda:{count - 1}")
    return dev


def autocast_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype of `precision` on `device` (None: full fp32)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}: use fp32, bf16, fp16 or auto")
    if precision in ("fp32", "off") or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "fp16":
        if device.type != "cuda":
            raise ConfigError("fp16 autocast needs a GPU; on CPU use bf16 (or fp32)")
        return torch.float16
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("this GPU has no bf16 support: use fp16 or fp32")
        return torch.bfloat16
    # auto on a GPU: bf16 where the GPU has it (no loss scaling needed), else fp16 as the official runs
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def precision_name(dtype: Optional[torch.dtype]) -> str:
    """'fp32', 'bf16' or 'fp16' for an autocast dtype (None: fp32)."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def autocast(device: torch.device, dtype: Optional[torch.dtype]) -> contextlib.AbstractContextManager:
    """torch.autocast for a low-precision dtype, nothing for None (fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def bf16_matmul_speed(n: int = 1024, repeats: int = 3) -> float:
    """The speed of a bf16 n x n matrix product on this CPU as a multiple of the fp32 one's (best of `repeats` each,
    after a warm-up; ~0.1 s where bf16 is native). Under 1 where bf16 GEMMs are emulated (no AVX512-BF16 / AMX:
    ~0.01x on an AVX2-only AMD EPYC) or slow (~0.6x on an Intel Xeon whose hypervisor hides AMX)."""

    def best(a: torch.Tensor, b: torch.Tensor) -> float:
        torch.mm(a, b)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - start)
        return min(times)

    def ratio(size: int) -> float:
        g = torch.Generator().manual_seed(0)  # its own: a run's random streams (and an exact resume) stay untouched
        a, b = torch.randn(size, size, generator=g), torch.randn(size, size, generator=g)
        return best(a, b) / best(a.bfloat16(), b.bfloat16())

    # Emulated bf16 runs ~100x slower (0.005x on an AVX2-only EPYC), so the n = 1024 probe alone took 12 s there: a
    # 256-sided one (0.1 s) settles that case; native bf16 is measured at n, where small products' overheads fade.
    quick = ratio(min(n, 256))
    return quick if quick < 0.2 or n <= 256 else ratio(n)


def slow_bf16_message(ratio: float) -> Optional[str]:
    """The warning for bf16 matrix products at `ratio` x the fp32 speed (None at 1 or above)."""
    if ratio >= 1.0:
        return None
    shown = f"{ratio:.2f}" if ratio >= 0.1 else f"{ratio:.2g}"  # 0.58, 0.0053 (emulated: never "0.00")
    return (
        f"bf16 matrix products ran at {shown}x the speed of fp32 ones on this CPU: bf16 autocast will not speed "
        "up GEMM-bound models here"
    )


def slow_bf16_note(device: torch.device, amp: Optional[torch.dtype]) -> Optional[str]:
    """For bf16 autocast on the CPU, a warning where this CPU's bf16 GEMMs are slower than its fp32 ones (None
    elsewhere): `litvit train / eval --amp bf16` say so before they start, as `litvit bench` does from its probe."""
    if device.type != "cpu" or amp is not torch.bfloat16:
        return None
    return slow_bf16_message(bf16_matmul_speed())


def synchronizer(device: torch.device) -> Optional[Callable[[], None]]:
    """A function that waits for `device` (None on CPU, where calls are synchronous)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return None


def seed_all(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_threads(threads: Optional[int]) -> int:
    """Set torch's intra-op threads (None: leave them); returns the number in use."""
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"threads must be an integer >= 1, got {threads!r}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


# --- processes (torchrun) --------------------------------------------------------------------------------------------


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: Optional[str] = "auto") -> DistInfo:
    """Join the process group torchrun set up (RANK / WORLD_SIZE / LOCAL_RANK in the environment), if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda" and world > 1 and local_world > torch.cuda.device_count():
        # Two processes on one GPU: NCCL refuses it deep in its first collective ("invalid usage").
        count = torch.cuda.device_count()
        raise ConfigError(
            f"torchrun started {local_world} processes on this machine, which has {count} GPU(s): NCCL needs a GPU "
            f"per process; use --nproc_per_node {count} (or fewer), or --device cpu (gloo)"
        )
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, device_id=dev if dev.type == "cuda" else None)
    if dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, local_world_size=local_world, device=dev)


def _multi() -> bool:
    return dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if _multi():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def max_over_ranks(value: int, device: torch.device) -> int:
    """The largest of every rank's `value` (nccl wants the tensor on the rank's GPU)."""
    if not _multi():
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def all_gather_object(obj: Any) -> List[Any]:
    if not _multi():
        return [obj]
    out: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    if not _multi():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics; DDP runs with broadcast_buffers=False as
    the official trainer does), so that all ranks evaluate the model that rank 0 saves."""
    if not _multi():
        return
    for buf in module.buffers():
        dist.broadcast(buf.data, src=src)


def barrier() -> None:
    if _multi():
        dist.barrier()


def torch_older_than(major: int, minor: int) -> bool:
    """The installed torch is older than major.minor (local version tags such as +cu130 ignored)."""
    return tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2]) < (major, minor)


def cleanup(together: bool = True) -> None:
    """Leave the process group together: with torch 2.6's gloo a rank could hang in destroy_process_group when the
    other ranks had already left (seen as 1 hang in 6 two-process `litvit eval` runs, and once more after a barrier
    in CI, 2026-12-03). There, after the barrier, the group is left to the process's exit instead. A rank leaving on
    an error (`together=False`) may be alone: the others can be inside a collective it never joins, so a barrier would
    hang them all; it leaves the group to its exit, and torchrun stops the others."""
    if dist.is_initialized() and not together and dist.get_world_size() > 1:
        return
    if dist.is_initialized():
        if dist.get_world_size() > 1:
            dist.barrier()
            if dist.get_backend() == "gloo" and torch_older_than(2, 7):
                return
        dist.destroy_process_group()
