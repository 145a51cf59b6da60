"""`litvit bench --runtime`: each runtime gives a row in one interleaved run; unknown or unavailable runtimes are one
line (exit 2). No timing is asserted; the rows' logit differences from eager fp32 are."""

import importlib.util
import json

import pytest
import torch
from timm.models import register_model
from torch import nn

import litvit.export.quantize as quantize
from litvit.bench.cli import main
from litvit.bench.config import BenchConfig
from litvit.bench.runner import _auto_device
from litvit.errors import ExportError
from litvit.export.quantize import check_compilable
from litvit.runtime import torch_older_than

TINY = ["--img-size", "32", "--batch-size", "2", "--threads", "1", "--quiet", "--no-memory"]
ONE_ROUND = ["--warmup", "0", "--rounds", "1", "--repeats", "1"]
OLD_TORCH = torch_older_than(2, 7)  # onnxruntime-int8 refused (export.quantize.check_onnx_int8)


class TinyNet(nn.Module):
    """Conv, ReLU, pool, linear: the layers int8 quantises, compiled in seconds."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.head = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x))  # (B, 8, H/2, W/2)
        return self.head(x.mean((2, 3)))  # (B, 8) -> (B, classes)


@register_model
def bench_test_tinynet(pretrained: bool = False, **kwargs) -> nn.Module:
    kwargs.pop("img_size", None)
    return TinyNet()


def _run(tmp_path, *argv):
    out = tmp_path / "out"
    assert main(["bench_test_tinynet", *TINY, *ONE_ROUND, *argv, "--out", str(out)]) == 0
    record = json.loads((out / "results.json").read_text())
    return (out / "table.md").read_text(), {r["runtime"]: r for r in record["results"]}


def test_eager_and_compile_rows_in_one_run(tmp_path):
    table, rows = _run(tmp_path, "--runtime", "eager", "compile", "frozen", "compile+bf16", "frozen+bf16")
    assert set(rows) == {"eager", "compile", "frozen", "compile+bf16", "frozen+bf16"}
    assert rows["compile"]["max_abs_logit_diff"] < 1e-4  # the same fp32 graph
    assert rows["frozen"]["max_abs_logit_diff"] < 1e-4  # ... with its weights folded in as constants
    assert 0 < rows["compile+bf16"]["max_abs_logit_diff"] < 0.1 and 0 < rows["frozen+bf16"]["max_abs_logit_diff"] < 0.1
    for rt in ("compile", "frozen", "compile+bf16", "frozen+bf16"):
        assert rows[rt]["vs_eager"]["throughput"]["median"] > 0 and rows[rt]["prepare_s"] > 0
        assert rows[rt]["throughput"]["img_s"]["median"] > 0 and rows[rt]["latency"]["ms"]["median"] > 0
    assert "vs_eager" not in rows["eager"]
    assert "| compile+bf16 |" in table and "img/s vs eager" in table and "max abs Δlogit vs eager fp32" in table


def _compilable() -> bool:
    try:
        check_compilable()
        return True
    except ExportError:
        return False


@pytest.mark.skipif(not _compilable(), reason="compiled int8: torch >= 2.10 with litvit[deploy] (torchao)")
def test_int8_row(tmp_path):
    _, rows = _run(tmp_path, "--runtime", "eager", "int8")
    int8 = rows["int8"]
    assert 0 < int8["max_abs_logit_diff"] < 0.05
    assert int8["latency"]["ms"]["median"] > 0  # batch 1 runs the same quantised graph (dynamic batch)
    assert int8["vs_eager"]["throughput"]["median"] > 0


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxscript", "onnxruntime")), reason="litvit[deploy]"
)
def test_exported_runtimes_rows(tmp_path):
    """onnxruntime (fp32, and int8 quantised by onnxruntime where torch >= 2.7 exports the graph) and AOTInductor run
    litvit.export's graphs (litvit models only): a tiny LITv2 at 32 px."""
    out = tmp_path / "out"
    runtimes = ["onnxruntime", "aoti"] + ([] if OLD_TORCH else ["onnxruntime-int8"])
    argv = ["litv2_nano", "--runtime", *runtimes, *TINY, *ONE_ROUND, "--out", str(out)]
    assert main(argv) == 0
    rows = {r["runtime"]: r for r in json.loads((out / "results.json").read_text())["results"]}
    for rt in ("onnxruntime", "aoti"):
        assert rows[rt]["max_abs_logit_diff"] < 1e-3, rows[rt]  # the same fp32 model, other kernels
        assert rows[rt]["latency"]["ms"]["median"] > 0  # batch 1 too: the exports' batch is dynamic
    if not OLD_TORCH:
        int8 = rows["onnxruntime-int8"]  # calibrated on the benchmark's input: int8 rounding, not noise
        assert 1e-4 < int8["max_abs_logit_diff"] < 0.1 and int8["latency"]["ms"]["median"] > 0, int8


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--runtime", "tensorrt"], "unknown runtime 'tensorrt': use eager, compile, frozen, onnxruntime, aoti, int8"),
        (["--runtime", "int8+fp8"], "unknown runtime 'int8+fp8'"),
        (["--runtime", "eager", "eager"], "--runtime takes each runtime once"),
        (["--runtime", "int8", "--mode", "train"], "--runtime int8 times inference only"),
        (["--runtime", "frozen", "--mode", "train"], "--runtime frozen times inference only"),
        (["--runtime", "onnxruntime", "--dtype", "bf16"], "--runtime onnxruntime runs the exported fp32 graph"),
        (["--runtime", "compile", "--compile"], "--compile is --runtime compile"),
        (["--attention", "--runtime", "int8"], "--runtime applies to the model benchmark"),
    ],
)
def test_bad_runtime_is_one_line(argv, message, capsys, tmp_path):
    models = [] if "--attention" in argv else ["bench_test_tinynet"]
    assert main([*models, *argv, "--quiet", "--out", str(tmp_path / "never")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("litvit bench: ") and message in err[0], err
    assert not (tmp_path / "never").exists()


def test_onnxruntime_int8_refused_up_front_before_torch_2_7(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(quantize, "torch_older_than", lambda major, minor: True)
    assert main(["litv2_nano", "--runtime", "onnxruntime-int8", "--quiet", "--out", str(tmp_path / "never")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "onnxruntime int8 needs torch >= 2.7" in line and not (tmp_path / "never").exists()


@pytest.mark.skipif(not _compilable(), reason="compiled int8: torch >= 2.10 with litvit[deploy] (torchao)")
def test_int8_bf16_is_allowed_for_litvit_models(monkeypatch):
    """int8+bf16 was refused for LIT / LITv2 while the int8 graph kept torchvision's deform_conv2d (no CPU bf16
    kernel); it traces DTM as plain ops now (tests/export/test_quantize.py compiles and checks it)."""
    from litvit.bench.runtimes import check_runtime

    monkeypatch.setattr(quantize, "ONEDNN_BF16", True)  # a CPU with oneDNN bf16 kernels (AVX-512 and newer)
    check_runtime("int8", torch.device("cpu"), torch.bfloat16, "infer")


@pytest.mark.skipif(not _compilable(), reason="compiled int8: torch >= 2.10 with litvit[deploy] (torchao)")
def test_int8_bf16_refused_up_front_without_onednn_bf16(monkeypatch, capsys, tmp_path):
    """AVX2-only CPUs: oneDNN has no int8 matmul with bf16 output there; refused before quantising, in one line."""
    monkeypatch.setattr(quantize, "ONEDNN_BF16", False)
    assert main(["litv2_nano", "--runtime", "int8+bf16", "--quiet", "--out", str(tmp_path / "never")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "int8 with bf16 needs oneDNN's bf16 kernels" in line and not (tmp_path / "never").exists()


def test_missing_optional_dependency_names_the_extra(monkeypatch, capsys, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    assert main(["bench_test_tinynet", "--runtime", "onnxruntime", "--quiet", "--out", str(tmp_path / "x")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--runtime onnxruntime needs onnxruntime" in line and "pip install 'litvit[deploy]'" in line


def test_frozen_runtime_folds_the_weights_in(tmp_path):
    """`frozen` compiles with inductor's freezing: BatchNorm is folded into the conv at compile time, so a change of
    its statistics afterwards moves eager's output and not the frozen graph's (a plain compile follows it). A plain
    compile of the same class first must not hand its graph over (dynamo caches per code and backend)."""
    from litvit.bench.runtimes import build_runtime

    class ConvBN(TinyNet):
        def __init__(self) -> None:
            super().__init__()
            self.bn = nn.BatchNorm2d(8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.relu(self.bn(self.conv(x))).mean((2, 3)))

    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    plain, _ = build_runtime("compile", ConvBN().eval(), x, None)
    model = ConvBN().eval()
    frozen, facts = build_runtime("frozen", model, x, None)
    assert facts["max_abs_logit_diff"] < 1e-5 and facts["top1_agreement"] == 1.0
    before = frozen(x)
    with torch.no_grad():
        model.bn.running_mean.add_(1.0)
        assert (model(x) - before).abs().max() > 1e-3
    torch.testing.assert_close(frozen(x), before)


@pytest.mark.parametrize(
    "fields, device",
    [
        (dict(runtimes=["eager"]), None),  # auto: CUDA where there is one
        (dict(runtimes=["eager", "onnxruntime"]), "cpu"),
        (dict(runtimes=["eager"], models=["litv2_nano", "resnet18@eager,int8"]), "cpu"),
        (dict(runtimes=["int8+bf16"]), "cpu"),
        (dict(runtimes=["onnxruntime"], device="cuda"), "cuda"),  # asked for: check_runtime refuses it in one line
    ],
)
def test_auto_device_is_the_cpu_for_cpu_only_runtimes(fields, device):
    """With no --device, a run that asks for a CPU-only runtime times every runtime on the CPU, also where a GPU is
    present (where it would otherwise be refused with 'runs on the CPU only')."""
    assert _auto_device(BenchConfig(**fields)) == device
