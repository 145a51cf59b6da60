"""Sharding, seeding and batching shared by training and evaluation.

Augmentation randomness is a function of (seed, epoch, position in the epoch's global sample order), not of a
random stream: a sample is augmented the same way whatever the number of processes or loader workers, and a run
resumed in the middle of an epoch sees exactly the batches the interrupted run would have seen. Each sample's
transforms run with the process's random generators (Python, NumPy, torch CPU) seeded for that sample and restored
afterwards, so the training loop's own random stream (mixup, drop path) is untouched.
"""

import functools
import os
import random
import signal
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import DataError
from .folder import BadImage

Item = Tuple[int, int]  # (dataset index, augmentation seed)


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """A 63-bit seed for one sample's augmentation, mixed from the run seed, the epoch and the global position."""
    words = np.random.SeedSequence((seed & 0xFFFFFFFF, epoch, position)).generate_state(2)
    return (int(words[0]) << 31) ^ int(words[1])


@contextmanager
def seeded_rng(seed: int) -> Iterator[None]:
    """Seed Python's, NumPy's and torch's CPU generator for a block, then put their previous states back."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    torch_state = torch.random.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.random.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.random.set_rng_state(torch_state)


class ShardSampler(Sampler):
    """Evaluation sharding: rank r takes indices r, r + world, ... (no padding, so every sample counts once)."""

    def __init__(self, size: int, num_replicas: int = 1, rank: int = 0):
        self.size, self.num_replicas, self.rank = size, num_replicas, rank

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.size, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.num_replicas))

    def set_epoch(self, epoch: int) -> None:
        pass


class EpochSampler(Sampler):
    """Wraps a per-rank sampler (torch DistributedSampler, timm RepeatAugSampler or ShardSampler, which all hand
    rank r the global positions r, r + world, ...) and yields (index, augmentation seed) pairs; `set_epoch(e, skip)`
    also drops the first `skip` samples of this rank's stream (a resumed epoch)."""

    def __init__(self, base: Sampler, seed: int, num_replicas: int = 1, rank: int = 0, augment: bool = True):
        self.base, self.seed, self.num_replicas, self.rank, self.augment = base, seed, num_replicas, rank, augment
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def __iter__(self) -> Iterator[Item]:
        for k, index in enumerate(self.base):
            if k < self.skip:
                continue
            position = k * self.num_replicas + self.rank
            yield int(index), sample_seed(self.seed, self.epoch, position) if self.augment else 0

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)


class SeededDataset(Dataset):
    """Indexed by (index, seed) pairs: loads and transforms sample `index` with the generators seeded by `seed`.

    Returns (image, target, bad) where `bad` lists (path, reason) of unreadable files met. When `substitute` is on
    (training), an unreadable image is replaced by the next readable one so batches keep their size (and DDP ranks
    stay in step); otherwise (evaluation) the image comes back as None and the collate drops it.
    """

    def __init__(self, dataset: Dataset, substitute: bool = False, max_substitutes: int = 16):
        self.dataset = dataset
        self.substitute = substitute
        self.max_substitutes = max_substitutes

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: Item) -> Tuple[Any, int, List[Tuple[str, str]]]:
        index, seed = item
        bad: List[Tuple[str, str]] = []
        n = len(self.dataset)
        for attempt in range(self.max_substitutes + 1 if self.substitute else 1):
            with seeded_rng(seed + attempt):
                img, target = self.dataset[(index + attempt) % n]
            if not isinstance(img, BadImage):
                return img, target, bad
            bad.append((img.path, img.reason))
        if self.substitute:
            raise DataError(
                f"{len(bad)} unreadable images in a row from {bad[0][0]!r}: the data set looks broken; check it "
                "(or pass --bad-images error to stop at the first one)"
            )
        return None, target, bad


def collate(
    batch: Sequence[Tuple[Any, int, List[Tuple[str, str]]]],
) -> Tuple[Optional[torch.Tensor], torch.Tensor, list]:
    """Stack the readable samples; returns (images or None if none was readable, targets, bad files)."""
    bad = [b for _, _, items in batch for b in items]
    kept = [(img, target) for img, target, _ in batch if img is not None]
    if not kept:
        return None, torch.zeros(0, dtype=torch.long), bad
    images = torch.stack([img for img, _ in kept])
    targets = torch.tensor([target for _, target in kept], dtype=torch.long)
    return images, targets, bad


def list_collate(batch: Sequence[Tuple[Any, Any, List[Tuple[str, str]]]]) -> Tuple[list, list, list]:
    """(inputs, targets, bad files) as lists, for samples that differ in size (detection images, whole-image
    segmentation): the task batches them."""
    bad = [b for _, _, items in batch for b in items]
    kept = [(x, target) for x, target, _ in batch if x is not None]
    return [x for x, _ in kept], [t for _, t in kept], bad


class Loader(DataLoader):
    """torch's DataLoader, with two changes for the worker processes.

    Signals meant for the run leave the workers alone: Ctrl-C (SIGINT) reaches the whole process group, and SIGTERM
    does too when torchrun passes its own on to each rank's process group (or systemd, `kill -- -PGID` send it);
    a worker it ended would make the next batch an error, while the main process stops at the end of an optimizer
    step and saves (train/loop.py). A SIGTERM from the main process itself (how torch and multiprocessing end
    workers slow to exit) still ends a worker, and a worker whose main process is gone exits (torch checks).

    A worker dying while the main process fetches a batch it sent always comes out as torch's own "DataLoader worker
    (pid(s) N) exited unexpectedly" RuntimeError (which `errors.out_of_resources` makes one line of), not as the
    ConnectionResetError / FileNotFoundError / EOFError of the connection the batch came through: torch re-raises
    that one when it checks the worker before the kernel has marked it dead."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.own_signals = "worker_init_fn" not in kwargs and hasattr(signal, "sigwaitinfo")  # (POSIX but macOS)
        if self.own_signals:
            kwargs["worker_init_fn"] = functools.partial(_leave_signals_to_the_run, os.getpid())
        super().__init__(*args, **kwargs)

    def __iter__(self) -> Any:
        if self.num_workers == 0:
            return super().__iter__()
        # Workers start with SIGTERM blocked (they inherit the mask of the thread that starts them), so that no
        # thread of theirs takes it but the one made for it: torch may start threads before a worker's init.
        before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM}) if self.own_signals else None
        try:
            batches = super().__iter__()
        finally:
            if before is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, before)
        return _NamingDeadWorkers(batches)


class _NamingDeadWorkers:
    def __init__(self, batches: Any, wait: float = 1.0):
        self.batches, self.wait = batches, wait

    def __iter__(self) -> "_NamingDeadWorkers":
        return self

    def __len__(self) -> int:
        return len(self.batches)

    def __next__(self) -> Any:
        try:
            return next(self.batches)
        except (OSError, EOFError) as e:
            if "in DataLoader worker process" in str(e):  # the dataset's own error, re-raised by torch
                raise
            workers = getattr(self.batches, "_workers", [])
            deadline = time.monotonic() + self.wait  # the socket closes a moment before the process is dead
            while not (dead := [w for w in workers if not w.is_alive()]) and time.monotonic() < deadline:
                time.sleep(0.01)
            if not dead:
                raise
            pids = ", ".join(str(w.pid) for w in dead)
            raise RuntimeError(f"DataLoader worker (pid(s) {pids}) exited unexpectedly") from e


def _leave_signals_to_the_run(main_pid: int, _worker_id: int) -> None:
    """A worker's start: SIGINT ignored; SIGTERM blocked, and taken by a thread that ends the worker (exit status 0,
    as torch's own worker handler does) only when the main process sent it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # (already: started so; see Loader.__iter__)
    threading.Thread(target=_end_on_sigterm_from, args=(main_pid,), name="sigterm", daemon=True).start()


def _end_on_sigterm_from(main_pid: int) -> None:
    while signal.sigwaitinfo({signal.SIGTERM}).si_pid != main_pid:
        pass
    os._exit(0)
