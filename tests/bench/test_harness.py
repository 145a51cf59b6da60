"""The harness's parts: statistics, interleaving order, timing on a fake clock, sizes, command line, MAC counts."""

import pytest
import torch

from litvit.bench import machine
from litvit.bench.config import parse_sizes
from litvit.bench.machine import command_line, machine_info
from litvit.bench.report import steal_lines
from litvit.bench.timing import interleave, matmul_record, rate_summary, round_order, summarize
from litvit.errors import BenchError


class FakeClock:
    """A clock that only moves when a task says how long it took."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_summarize_median_min_max_mean():
    s = summarize([3.0, 1.0, 2.0, 10.0])
    assert (s.n, s.median, s.min, s.max, s.mean) == (4, 2.5, 1.0, 10.0, 4.0)
    assert summarize([5.0, 1.0, 3.0]).median == 3.0
    assert summarize([7.0]).as_dict() == {"n": 1, "median": 7.0, "min": 7.0, "max": 7.0, "mean": 7.0}


def test_summarize_empty_is_an_error():
    with pytest.raises(BenchError, match="no timings"):
        summarize([])


def test_rate_summary_orders_min_median_max():
    r = rate_summary([0.5, 0.25, 1.0], items=16)
    assert r == {"median": 32.0, "min": 16.0, "max": 64.0}


def test_round_order_rotates_start():
    names = ["a", "b", "c"]
    assert [round_order(names, r) for r in range(4)] == [
        ["a", "b", "c"],
        ["b", "c", "a"],
        ["c", "a", "b"],
        ["a", "b", "c"],
    ]
    assert round_order([], 3) == []


def test_interleave_order_warmup_and_timings_on_fake_clock():
    clock = FakeClock()
    calls = []
    durations = {"a": iter([9.0, 1.0, 2.0, 3.0, 4.0]), "b": iter([9.0, 10.0, 20.0, 30.0, 40.0])}

    def task(name):
        def run():
            calls.append(name)
            clock.advance(next(durations[name]))

        return run

    seen, warm = [], {}
    out = interleave(
        {"a": task("a"), "b": task("b")},
        rounds=2,
        repeats=2,
        warmup=1,
        clock=clock,
        on_call=lambda n, r, i, dt: seen.append((n, r, i, dt)),
        warmup_times=warm,
    )
    assert warm == {"a": [9.0], "b": [9.0]}
    # warm-up once each, then round 0: a a b b, round 1 (rotated): b b a a
    assert calls == ["a", "b", "a", "a", "b", "b", "b", "b", "a", "a"]
    assert out == {"a": [[1.0, 2.0], [3.0, 4.0]], "b": [[10.0, 20.0], [30.0, 40.0]]}
    assert seen[0] == ("a", 0, 0, 1.0) and seen[-1] == ("a", 1, 1, 4.0)
    assert summarize([t for r in out["b"] for t in r]).median == 25.0


def test_interleave_calls_sync_around_each_timed_call():
    events = []
    interleave(
        {"x": lambda: events.append("call")},
        rounds=1,
        repeats=2,
        warmup=0,
        clock=lambda: 0.0,
        sync=lambda: events.append("sync"),
    )
    assert events == ["sync", "call", "sync", "sync", "call", "sync"]
    events.clear()
    interleave({"x": lambda: events.append("call")}, rounds=1, repeats=1, warmup=1, sync=lambda: events.append("s"))
    assert events == ["s", "call", "s", "s", "call", "s"]


@pytest.mark.parametrize("rounds,repeats,warmup", [(0, 1, 0), (1, 0, 0), (1, 1, -1)])
def test_interleave_rejects_bad_counts(rounds, repeats, warmup):
    with pytest.raises(BenchError):
        interleave({"x": lambda: None}, rounds=rounds, repeats=repeats, warmup=warmup)


def test_matmul_record_gflops():
    rec = matmul_record([[2.0, 1.0], [4.0]], n=1000, dtype="fp32")
    assert rec["flops_per_call"] == 2e9
    assert rec["gflops_median"] == pytest.approx(1.0)  # median time 2 s
    assert rec["gflops_best"] == pytest.approx(2.0)


def test_parse_sizes():
    assert parse_sizes(["14", "28x20", 7]) == [(14, 14), (28, 20), (7, 7)]
    for bad in ("0", "abc", "2x3x4", "-5"):
        with pytest.raises(BenchError, match="bad size"):
            parse_sizes([bad])


def test_the_record_names_the_variables_that_change_what_runs(monkeypatch):
    """A max-autotune run must say so in its table: inductor's variables are recorded with the OpenMP / BLAS ones."""
    monkeypatch.setenv("TORCHINDUCTOR_MAX_AUTOTUNE", "1")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setenv("HOME_OF_SOMETHING_ELSE", "x")
    env = machine_info(torch.device("cpu"), 1)["env"]
    assert env["TORCHINDUCTOR_MAX_AUTOTUNE"] == "1" and env["OMP_WAIT_POLICY"] == "PASSIVE"
    assert "HOME_OF_SOMETHING_ELSE" not in env


def test_command_line():
    assert command_line(["/usr/bin/litvit", "bench", "--out", "a b"]) == "litvit bench --out 'a b'"
    assert command_line(["benchmarks/models.py", "x"]).startswith("python ")


def test_train_macs_count_grouped_conv_backward_as_twice_the_forward():
    """torch's FlopCounterMode ignores groups in convolution_backward; the benchmark corrects it."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from litvit.bench.subject import counted_flops

    for groups in (1, 64):
        conv = torch.nn.Conv2d(64, 64, 3, padding=1, groups=groups)
        x = torch.randn(2, 64, 14, 14, requires_grad=True)
        with FlopCounterMode(display=False) as fwd:
            conv(x)
        with FlopCounterMode(display=False) as step:
            conv(x).sum().backward()
        assert counted_flops(step) == 3 * fwd.get_total_flops()


def test_steal_share_from_two_proc_stat_readings(tmp_path):
    """/proc/stat's first line: user nice system idle iowait irq softirq steal guest guest_nice (guest time is
    already inside user / nice, so it is not added to the total)."""
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 20 800 0 0 0 80 50 0\ncpu0 1 2 3\n")
    start = machine.cpu_ticks(str(stat))
    assert start is not None and (start.steal, start.total, start.idle) == (80, 1000, 800)
    stat.write_text("cpu  300 0 40 900 0 0 0 240 0 0\n")
    assert machine.steal_share(start, machine.cpu_ticks(str(stat))) == pytest.approx(160 / 480)
    assert machine.steal_share(start, start) is None and machine.steal_share(None, start) is None
    stat.write_text("not a stat file\n")
    assert machine.cpu_ticks(str(stat)) is None and machine.cpu_ticks(str(tmp_path / "missing")) is None


def test_others_share_is_busy_time_less_our_own(monkeypatch):
    """Other processes' share of the machine's CPU time between two readings: busy ticks (neither idle nor stolen)
    less this process's own CPU seconds; the warning names the share and fires only above OTHERS_WARNING."""
    monkeypatch.setattr(machine.os, "sysconf", lambda name: 100)
    start = machine.CpuTicks(steal=0, total=1000, idle=800, own_s=1.0)
    # 400 ticks (4 s of two cores' 2 s each): 100 idle, 100 stolen, 200 busy, of which 1.2 s are ours
    end = machine.CpuTicks(steal=100, total=1400, idle=900, own_s=2.2)
    assert machine.others_share(start, end) == pytest.approx(0.8 / 4)
    assert machine.others_share(start, start) is None and machine.others_share(None, end) is None
    ours_only = machine.CpuTicks(steal=100, total=1400, idle=900, own_s=5.0)  # our children: more than the ticks
    assert machine.others_share(start, ours_only) == 0.0
    assert machine.busy_warning(0.2).startswith("machine busy: other processes used 20% of its CPU time")
    assert machine.busy_warning(machine.OTHERS_WARNING) is None and machine.busy_warning(None) is None
    lines = steal_lines({"others_share": 0.2, "steal_share": 0.0})
    assert lines[0] == "CPU time used by other processes during the run: 20.0%" and len(lines) == 2


def test_report_warns_when_the_hypervisor_steals_time():
    lines = steal_lines({"steal_share": 0.42})
    assert "42.0%" in lines[0] and lines[1].startswith("**Warning: the hypervisor took 42%")
    assert len(steal_lines({"steal_share": 0.01})) == 1 and steal_lines({"steal_share": None}) == []


def test_slow_bf16_gemm_warning_compares_the_two_probes():
    """bf16 autocast only pays where bf16 GEMMs beat fp32 ones: the warning fires when the run's bf16 probe was slower
    (an AMX-less Xeon: ~0.6x) and names the ratio; it stays silent when bf16 is faster or was not probed."""
    fp32 = matmul_record([[0.10, 0.10]], 1024)  # 2 * 1024^3 FLOPs in 0.1 s
    slow = dict(fp32, bf16=matmul_record([[0.16, 0.16]], 1024, "bf16"))
    fast = dict(fp32, bf16=matmul_record([[0.05, 0.05]], 1024, "bf16"))
    assert machine.slow_bf16_gemm_warning(slow).startswith("bf16 matrix products ran at 0.62x the speed of fp32 ones")
    assert machine.slow_bf16_gemm_warning(fast) is None and machine.slow_bf16_gemm_warning(fp32) is None
