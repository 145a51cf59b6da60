"""`litvit bench` end to end on tiny models / layers, and its one-line errors."""

import json
import platform
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

from litvit.bench.cli import main
from litvit.bench.machine import native_bf16
from litvit.flops import count_macs

PNG = b"\x89PNG\r\n\x1a\n"
TINY = ["--img-size", "32", "--batch-size", "2", "--threads", "1", "--quiet"]


GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def _outputs(out: Path):
    table = (out / "table.md").read_text()
    record = json.loads((out / "results.json").read_text())
    assert (out / "plot.png").read_bytes()[:8] == PNG
    return table, record


def test_quick_models_run_writes_table_json_plot(tmp_path, capsys):
    out = tmp_path / "models"
    assert main(["--quick", "litv2_nano", "resnet18", *TINY, "--reference", "resnet18", "--out", str(out)]) == 0
    table, record = _outputs(out)
    assert "wrote" in capsys.readouterr().out

    assert record["kind"] == "models"
    m = record["machine"]
    keys = ("cpu", "cores", "torch", "timm", "threads", "date", "command", "load_average_start", "steal_share")
    for k in (*keys, "others_share"):
        assert k in m
    if m["others_share"] is not None:  # Linux: other processes' share of the CPU time during the run
        assert 0 <= m["others_share"] <= 1 and "used by other processes" in table
    if m["steal_share"] is not None:  # Linux: the share of CPU time stolen by the hypervisor, in the header too
        assert 0 <= m["steal_share"] <= 1 and "stolen by the hypervisor" in table
    assert m["threads"] == 1 and "--quick" in m["command"]
    assert f"Allocator: {m['allocator']}" in table  # what malloc did with freed memory (litvit.allocator)
    if GLIBC:
        assert m["allocator"].startswith("glibc, freed memory kept")
    cfg = record["config"]
    assert (cfg["batch_size"], cfg["img_size"], cfg["rounds"], cfg["repeats"], cfg["reference"]) == (
        2,
        32,
        1,
        1,
        "resnet18",
    )
    assert record["matmul"]["n"] == 2048 and record["matmul"]["gflops_median"] > 0
    assert record["memory"]["baseline"]["peak_rss_bytes"] > 0

    nano, resnet = record["results"]
    assert (nano["model"], nano["ours"], resnet["ours"]) == ("litv2_nano", True, False)
    for r in (nano, resnet):
        assert r["params_m"] > 0 and r["gmacs"] > 0
        ips = r["throughput"]["img_s"]
        assert ips["min"] <= ips["median"] <= ips["max"]
        assert len(r["throughput"]["times_s"]) == 1 and len(r["throughput"]["times_s"][0]) == 1
        assert r["latency"]["ms"]["median"] > 0
        assert 0 < r["peak_fraction"] < 10
        mem = r["memory"]
        assert "error" not in mem, mem
        assert mem["peak_rss_mb"] >= mem["baseline_rss_mb"] > 0
        assert mem["step_rss_per_image_mb"] >= 0
    assert resnet["vs_reference"]["throughput"]["median"] == pytest.approx(1.0)
    assert nano["vs_reference"]["throughput"]["median"] > 0 and "latency" in nano["vs_reference"]
    assert resnet["params_m"] == pytest.approx(11.69, abs=0.01)
    # the deform_conv2d formula of litvit.flops is in the count (it is registered when litvit.flops is imported)
    assert nano["macs"] == count_macs(timm.create_model("litv2_nano"), 32)

    assert "| **LITv2-nano** |" in table and "| ResNet-18 |" in table
    for col in ("img/s", "latency b1 (ms)", "% matmul peak", "peak RSS (MB)", "img/s vs ResNet-18"):
        assert col in table


def test_bf16_train_run_reports_logit_check_and_step_macs(tmp_path):
    out = tmp_path / "bf16"
    args = ["litv2_nano", *TINY, "--dtype", "bf16", "--mode", "train", "--no-latency", "--no-memory"]
    assert main([*args, "--warmup", "1", "--rounds", "2", "--repeats", "1", "--out", str(out)]) == 0
    table, record = _outputs(out)
    (nano,) = record["results"]
    assert nano["logit_rel_diff"] is not None and nano["logit_rel_diff"] < 0.1
    assert nano["macs_step_per_image"] == pytest.approx(3 * nano["macs"], rel=0.05)  # forward + backward
    assert len(nano["throughput"]["times_s"]) == 2
    assert "latency" not in nano and "memory" not in nano
    assert "bf16 logit rel. diff" in table and "latency b1" not in table
    if native_bf16() is False:  # emulated bf16: no probe (minutes for one product), the table says why
        assert "bf16" not in record["matmul"] and "Matmul bf16" not in table
        assert "**Warning: this CPU has no native bf16" in table
        return
    bf16_probe = record["matmul"]["bf16"]  # a bf16 product beside the fp32 probe, named in the header
    assert bf16_probe["dtype"] == "bf16" and bf16_probe["gflops_median"] > 0 and len(bf16_probe["times_s"]) == 2
    assert "Matmul bf16 (same size, same run)" in table


def test_no_bf16_probe_where_bf16_is_emulated(tmp_path, monkeypatch):
    """Without native bf16 the probe would take minutes (0.3 GFLOP/s on an AVX2-only EPYC): it is left out, and the
    table carries the emulation warning instead."""
    import litvit.bench.machine as machine

    monkeypatch.setattr(machine, "cpu_flags", lambda: ["avx2", "fma"])
    out = tmp_path / "emulated"
    args = ["litv2_nano", *TINY, "--dtype", "bf16", "--no-latency", "--no-memory", "--rounds", "1", "--repeats", "1"]
    assert main([*args, "--warmup", "0", "--out", str(out)]) == 0
    table, record = _outputs(out)
    assert "bf16" not in record["matmul"] and record["matmul"]["gflops_median"] > 0
    assert "**Warning: this CPU has no native bf16" in table and "Matmul bf16" not in table


def test_quick_attention_run(tmp_path):
    out = tmp_path / "attn"
    args = ["--attention", "--quick", "--sizes", "7", "6x9", "--no-memory", "--threads", "1", "--quiet"]
    assert main([*args, "--out", str(out)]) == 0
    table, record = _outputs(out)
    assert record["kind"] == "attention"
    assert record["config"]["sizes"] == [[7, 7], [6, 9]]
    rows = {(r["layer"], tuple(r["size"])): r for r in record["results"]}
    assert set(rows) == {(n, s) for n in record["config"]["layers"] for s in ((7, 7), (6, 9))}
    hilo = rows[("hilo", (7, 7))]
    assert hilo["macs_per_image"] > 0 and "official_flops" in hilo
    assert "vs_hilo_matmul" in hilo and "vs_hilo" in rows[("mhsa", (7, 7))]
    assert rows[("pvt_sra", (7, 7))]["sr_ratio"] == 1
    assert "| **HiLo (litvit)** | 7x7 |" in table and "vs matmul HiLo" in table


def test_memory_child_report_in_process():
    """The fresh-process measurement, run in this process (the models run above spawns real children)."""
    from litvit.bench._child import main as child_main
    from litvit.bench._child import measure

    spec = {"kind": "layer", "name": "hilo", "size": [7, 7], "dim": 48, "heads": 6, "window": 2, "alpha": 0.9}
    spec.update(batch_size=2, dtype="fp32", mode="train", device="cpu", threads=None, compile=False, iters=1)
    rep = measure(spec)
    assert rep["peak_rss_bytes"] >= rep["peak_built_bytes"] >= rep["rss_built_bytes"] > 0
    if rep["peak_reset"]:
        assert rep["step_peak_bytes"] >= rep["rss_built_bytes"] * 0.9
    base = measure({"kind": "baseline", "device": "cpu"})
    assert base["peak_rss_bytes"] > 0 and "rss_built_bytes" not in base
    assert child_main(["not", "one"]) == 2


@pytest.mark.parametrize(
    "argv,message",
    [
        (["resnet5000"], "unknown model 'resnet5000'"),
        (["litv2_nano", "litv2_nano"], "listed twice"),
        (["litv2_nano", "--dtype", "fp8"], "unknown precision 'fp8': use fp32, bf16, fp16 or auto"),
        (["litv2_nano", "--dtype", "fp16", "--device", "cpu"], "fp16 autocast needs a GPU"),
        (["--attention", "--dtype", "fp16", "--device", "cpu"], "fp16 autocast needs a GPU"),
        (["litv2_nano", "--threads", "0"], "threads must be an integer >= 1, got 0"),
        (["--attention", "--threads", "0"], "threads must be an integer >= 1, got 0"),
        (["litv2_nano", "--memory-jobs", "0"], "--memory-jobs must be >= 1"),
        (["--attention", "--warmup", "-1"], "--warmup must be >= 0"),
        (["--attention", "--alpha", "1.5"], "--alpha must be in [0, 1]"),
        (["--attention", "--img-size", "64"], "--img-size applies to the model benchmark"),
        (["litv2_nano", "--mode", "eval"], "unknown mode 'eval'"),
        (["litv2_nano", "--batch-size", "0"], "--batch-size must be >= 1"),
        (["litv2_nano", "--rounds", "0"], "--rounds must be >= 1"),
        (["litv2_nano", "--reference", "resnet18"], "--reference 'resnet18' is not among"),
        (["litv2_nano", "--sizes", "14"], "--sizes applies to the attention benchmark"),
        (["--attention", "litv2_nano"], "--attention takes no model names"),
        (["--attention", "--sizes", "0"], "bad size '0'"),
        (["--attention", "--layers", "flash"], "unknown attention layer 'flash'"),
        (["--attention", "--dim", "100", "--heads", "12"], "must be a positive multiple of --heads"),
        (["--device", "tpu", "litv2_nano"], "unknown device 'tpu'"),
        (["litv2_nano", "--img-size", "8"], "litv2_nano does not run at 8x8"),
        # far more memory than any machine has (TiB): refused before building, not killed by the kernel
        (["litv2_nano", "--img-size", "20000", "--device", "cpu"], "litv2_nano needs at least"),
        (["--attention", "--sizes", "5000", "--device", "cpu"], "hilo@5000x5000 needs at least"),
    ],
)
def test_bad_arguments_give_one_line_error(argv, message, capsys, tmp_path):
    assert main([*argv, "--quiet", "--out", str(tmp_path / "never")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("litvit bench: ") and message in err[0], err[0]
    assert not (tmp_path / "never").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")
@pytest.mark.parametrize("argv", [["litv2_nano"], ["--attention"]])
def test_cuda_requested_without_gpu(argv, capsys):
    assert main([*argv, "--device", "cuda", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no CUDA device is available" in err[0], err


def test_cli_module_imports_without_torch():
    """`litvit --help` must stay fast: the bench parser loads neither torch nor timm (the run loads them)."""
    src = Path(__file__).resolve().parents[2] / "src" / "litvit"
    code = (
        "import sys, types\n"
        f"pkg = types.ModuleType('litvit'); pkg.__path__ = [{str(src)!r}]; sys.modules['litvit'] = pkg\n"
        "sys.modules['torch'] = sys.modules['timm'] = None  # any import of them fails\n"
        "from litvit.bench.cli import build_parser\n"
        "assert 'usage: litvit bench' in build_parser().format_help()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_registered_with_litvit_cli():
    from litvit.cli import build_parser

    args = build_parser().parse_args(["bench", "--attention", "--sizes", "14", "--quick"])
    assert args.attention and args.sizes == ["14"] and args.func.__module__ == "litvit.bench.cli"


@pytest.mark.parametrize("script", ["models.py", "attention.py", "targets.py", "deploy.py", "dense_targets.py"])
def test_benchmark_scripts_show_help(script, monkeypatch, capsys):
    path = Path(__file__).resolve().parents[2] / "benchmarks" / script
    monkeypatch.setattr(sys, "argv", [str(path), "--help"])
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(str(path), run_name="__main__")
    assert exc.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_dense_targets_splits_the_batch_over_processes():
    """--procs N runs torchrun with the scenes config's batch / N per process (the same total batch)."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "dense_targets.py"
    command = runpy.run_path(str(path))["command"]
    assert command("det", 1, []) == [sys.executable, "-m", "litvit.train"]
    two = command("seg", 2, [])
    assert two[1:3] == ["-m", "torch.distributed.run"] and two[two.index("--nproc_per_node") + 1] == "2"
    assert two[-4:] == ["-m", "litvit.train", "--batch-size", "4"]  # scenes_seg: batch 8
    assert "--batch-size" not in command("det", 2, ["--batch-size", "2"])  # the caller's per-process batch
    with pytest.raises(SystemExit, match="does not split over 3"):
        command("det", 3, [])


def test_a_full_disk_loses_no_results(tmp_path, capsys, monkeypatch):
    """The table is printed before the files are written; a full disk is one line (was an OSError traceback after
    the whole benchmark), and no file is left half-written."""
    import errno

    from litvit import checkpoint

    def full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "atomic_write", full)
    out = tmp_path / "out"
    args = ["litv2_nano", *TINY, "--no-latency", "--no-memory", "--rounds", "1", "--repeats", "1", "--out", str(out)]
    assert main(args) == 1
    stdout, stderr = capsys.readouterr()
    assert stdout.startswith("# litvit bench: models") and "img/s" in stdout  # the table, on the screen
    assert stderr.strip().splitlines() == [
        f"litvit bench: cannot write {out / 'table.md'} (No space left on device); the results are above: pick another "
        "--out"
    ]
    assert list(out.iterdir()) == []
