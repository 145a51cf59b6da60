"""litvit.runtime: device resolution and joining torchrun's process group, without a GPU (CUDA is simulated)."""

import pytest
import torch

from litvit import runtime as rt
from litvit.errors import ConfigError


def _torchrun_env(monkeypatch, world: int, local_world: int, local_rank: int = 0) -> None:
    values = dict(WORLD_SIZE=world, RANK=local_rank, LOCAL_RANK=local_rank, LOCAL_WORLD_SIZE=local_world)
    for key, value in values.items():
        monkeypatch.setenv(key, str(value))


def _gpus(monkeypatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_more_processes_than_gpus_is_one_clear_error(monkeypatch):
    """Two torchrun processes on a one-GPU machine would both take cuda:0, which NCCL refuses deep in its first
    collective ('invalid usage'): refused before the process group is set up, with the fix."""
    _torchrun_env(monkeypatch, world=2, local_world=2, local_rank=1)
    _gpus(monkeypatch, 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: pytest.fail("set_device reached"))
    with pytest.raises(ConfigError) as err:
        rt.init_distributed("auto")
    assert "2 processes" in str(err.value) and "1 GPU" in str(err.value)
    assert "--nproc_per_node 1" in str(err.value) and "--device cpu" in str(err.value)


def test_one_process_per_gpu_takes_its_local_rank(monkeypatch):
    _torchrun_env(monkeypatch, world=2, local_world=2, local_rank=1)
    _gpus(monkeypatch, 2)
    assert rt.resolve_device("auto", local_rank=1) == torch.device("cuda", 1)


def test_several_processes_on_the_cpu_join_gloo(monkeypatch):
    """The one-GPU-per-process rule is NCCL's: CPU processes (gloo) may be as many as torchrun starts."""
    _torchrun_env(monkeypatch, world=4, local_world=4, local_rank=3)
    _gpus(monkeypatch, 1)
    joined = []
    monkeypatch.setattr(rt.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(rt.dist, "init_process_group", lambda backend, device_id=None: joined.append(backend))
    info = rt.init_distributed("cpu")
    assert joined == ["gloo"] and info.device == torch.device("cpu") and info.world_size == 4


def test_bf16_matmul_speed_is_a_positive_ratio_and_leaves_the_random_stream_alone():
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    ratio = rt.bf16_matmul_speed(n=64, repeats=1)
    assert 0 < ratio < 1000
    assert rt.slow_bf16_message(0.0053).startswith("bf16 matrix products ran at 0.0053x")  # emulated: not "0.00x"
    assert torch.equal(torch.rand(3), expected)  # a training run's draws (and its exact resume) are unchanged


def test_slow_bf16_note_only_for_bf16_on_the_cpu(monkeypatch):
    monkeypatch.setattr(rt, "bf16_matmul_speed", lambda *a, **k: 0.55)
    cpu = torch.device("cpu")
    assert rt.slow_bf16_note(cpu, torch.bfloat16).startswith("bf16 matrix products ran at 0.55x the speed of fp32")
    assert rt.slow_bf16_note(cpu, None) is None  # fp32: no probe, no note
    assert rt.slow_bf16_note(torch.device("cuda"), torch.bfloat16) is None  # GPUs: tensor cores
    monkeypatch.setattr(rt, "bf16_matmul_speed", lambda *a, **k: 1.7)
    assert rt.slow_bf16_note(cpu, torch.bfloat16) is None
