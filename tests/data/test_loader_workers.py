"""A loader worker that dies while the main process is fetching a batch it sent must surface as torch's "DataLoader
worker (pid(s) N) exited unexpectedly" (what `errors.out_of_resources` turns into one line), never as the
ConnectionResetError / FileNotFoundError of the connection the batch's storage was coming through: torch re-raises
that one when it looks at the worker before the kernel has marked it dead (seen once in CI)."""

import gc
import multiprocessing.resource_sharer
import os
import signal
import time
import traceback
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from litvit.data.loader import Loader
from litvit.errors import out_of_resources


class _DiesSlowly(Dataset):
    """Item 0 is sent; at item 1 the worker stops sharing storages (as a dying process's sockets close), says so in
    `marker`, stays alive a moment, then is killed: the main process, reading item 0 meanwhile, finds the connection
    gone and the worker still alive - the window torch's own check misses."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> torch.Tensor:
        if i == 1:
            time.sleep(0.2)  # item 0 is in the queue, its storage waiting in this worker's resource sharer
            multiprocessing.resource_sharer._resource_sharer.stop()
            self.marker.touch()
            time.sleep(0.5)
            os.kill(os.getpid(), signal.SIGKILL)
        return torch.zeros(8)


def _first_item_late(loader: Loader, marker: Path) -> BaseException:
    batches = iter(loader)  # installs torch's SIGCHLD handler (once a process), which must not answer first here
    answer = signal.signal(signal.SIGCHLD, lambda *_: None)
    try:
        while not marker.exists():
            time.sleep(0.01)
        with pytest.raises(BaseException) as caught:
            next(batches)
        error = caught.value
        for e in (error, error.__cause__, error.__context__):
            if e is not None and e.__traceback__ is not None:
                traceback.clear_frames(e.__traceback__)  # they hold the loader's iterator
        del batches, caught
        gc.collect()  # the iterator is gone: its workers shut down, torch forgets their pids
        return error
    finally:
        signal.signal(signal.SIGCHLD, answer)


@pytest.mark.skipif(not hasattr(signal, "SIGCHLD"), reason="POSIX signals")
def test_a_worker_dying_while_its_batch_is_fetched_is_named_as_a_dead_worker(tmp_path):
    marker = tmp_path / "sharing stopped"
    error = _first_item_late(Loader(_DiesSlowly(marker), batch_size=1, num_workers=1, prefetch_factor=2), marker)
    assert isinstance(error, RuntimeError) and str(error).startswith("DataLoader worker (pid(s) "), repr(error)
    assert str(error).endswith("exited unexpectedly") and isinstance(error.__cause__, OSError)
    what, lower = out_of_resources(error)
    assert what.startswith("a data-loading worker died (DataLoader worker (pid(s) ") and lower == "fewer --workers"


def test_other_errors_of_the_fetch_pass_through_unchanged():
    class Fails(Dataset):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> torch.Tensor:
            raise FileNotFoundError("no such image")

    with pytest.raises(FileNotFoundError, match="no such image"):
        next(iter(Loader(Fails(), batch_size=1, num_workers=1)))
    assert len(Loader(Fails(), batch_size=1, num_workers=1)) == len(iter(Loader(Fails(), batch_size=1, num_workers=1)))


class _Pids(Dataset):
    def __len__(self) -> int:
        return 64

    def __getitem__(self, i: int) -> int:
        return os.getpid()


@pytest.mark.skipif(not hasattr(signal, "sigwaitinfo"), reason="POSIX signals but macOS")
def test_workers_outlive_a_sigterm_sent_to_the_run_and_end_on_their_main_process_s():
    """SIGTERM sent to every process of the run (torchrun passing its own on, systemd, `kill -- -PGID`) is for the
    main process, which stops at the end of an optimizer step and saves; a worker it killed made the next batch an
    error. A SIGTERM from the main process (multiprocessing's terminate, torch's shutdown) must still end a worker:
    ignoring it hung the interpreter's exit."""
    import multiprocessing
    import subprocess

    batches = iter(Loader(_Pids(), batch_size=1, num_workers=1, persistent_workers=True))
    worker_pid = int(next(batches))
    subprocess.run(["kill", "-TERM", str(worker_pid)], check=True)  # from another process
    time.sleep(0.3)
    assert [int(next(batches)) for _ in range(3)] == [worker_pid] * 3  # still serving
    (worker,) = [p for p in multiprocessing.active_children() if p.pid == worker_pid]
    worker.terminate()  # from the main process
    worker.join(10)
    assert worker.exitcode == 0  # as torch's own worker handler exits on its main process's SIGTERM
    del batches
