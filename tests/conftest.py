import importlib.util
import os
from pathlib import Path

import pytest
import torch

DATA = Path(__file__).parent / "data"


def pytest_configure(config):
    """Under pytest-xdist (`pytest -n auto`, the README's command) each worker computes on one thread: the workers
    share the cores, and most tests are tiny models that run fastest on one thread anyway. Without this every
    worker's torch would start a thread per core, and OpenMP threads fighting for cores run slower than one."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"  # for the subprocesses tests start
    config.addinivalue_line("markers", "needs(module, ...): uses an optional dependency (pytest_runtest_setup)")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or the module blocked in sys.modules
        return False


def pytest_runtest_setup(item):
    """A test marked `needs("module")` uses an optional dependency, one of the extras `dev` installs. Where it is not
    installed (a GPU machine's own image, say) the test skips, naming it; under CI=true it runs and fails, so that
    CI, which installs every extra, never skips it."""
    for mark in item.iter_markers("needs"):
        missing = [m for m in mark.args if not _installed(m)]
        if missing and not os.environ.get("CI"):
            pytest.skip(f"needs {', '.join(missing)} (optional: pip install -e '.[dev]')")


# Test folders whose tests run tiny models on one thread even outside pytest-xdist: tiny models run fastest on one
# thread, and these tests start subprocesses and compilers that should not fight them for the cores.
ONE_THREAD_FOLDERS = {"eval", "export", "predict", "train"}


@pytest.fixture(autouse=True)
def _seed_and_threads(request):
    torch.manual_seed(0)
    before = torch.get_num_threads()
    if Path(request.node.path).relative_to(Path(__file__).parent).parts[0] in ONE_THREAD_FOLDERS:
        torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _cpu_unless_gpu_test(request, monkeypatch):
    """The suite's tests are CPU tests (they compare runs bit for bit and against CPU-made numbers): on a machine with
    a GPU, 'auto' devices resolve to the CPU in them, as in the subprocesses they start (tests/train/helpers.env).
    tests/gpu holds the GPU's tests, which see it."""
    if "gpu" not in request.node.path.parts:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
