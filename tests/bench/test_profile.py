"""`litvit bench --profile`: every op's time lands in one category, by name and (convolutions) weight shape; and the
warning on CPUs where bf16 is emulated."""

import json
import mmap
import sys
from types import SimpleNamespace

import pytest
from torch.autograd import DeviceType

from litvit.bench.cli import main
from litvit.bench.profile import (
    CONV,
    DEPTHWISE,
    OPTIMIZER,
    OTHER,
    _faults_per_step,
    _op_events,
    _settled,
    categorize,
)

TINY = ["--img-size", "32", "--batch-size", "2", "--threads", "1", "--warmup", "1", "--repeats", "1", "--quiet"]


def test_categorize_by_name_and_conv_weight_shape():
    assert categorize("aten::addmm") == "GEMM (linear, matmul)"
    assert categorize("aten::gelu_backward") == "GELU"
    assert categorize("torchvision::deform_conv2d") == "deformable conv (DTM)"
    assert categorize("aten::index_select") == "deformable conv (DTM)"  # the fp32 inference gather
    # forward: the weight is input 1; backward (grad_out, input, weight, ...): input 2
    assert categorize("aten::mkldnn_convolution", [[2, 64, 8, 8], [64, 1, 3, 3], [64]]) == DEPTHWISE
    assert categorize("mkldnn::_convolution_pointwise", [[2, 64, 8, 8], [64, 1, 3, 3], [64]]) == DEPTHWISE
    assert categorize("aten::mkldnn_convolution", [[2, 3, 32, 32], [64, 3, 4, 4], [64]]) == CONV
    assert categorize("aten::convolution_backward", [[2, 64, 8, 8], [2, 64, 8, 8], [64, 1, 3, 3]]) == DEPTHWISE
    assert categorize("aten::convolution_backward", [[2, 64, 8, 8], [2, 3, 32, 32], [64, 3, 4, 4]]) == CONV
    assert categorize("aten::some_new_op") == OTHER
    assert categorize("aten::cudnn_grid_sampler") == "deformable conv (DTM)"  # the sampled DTM on CUDA


def test_cuda_profile_counts_each_kernel_once():
    """On CUDA an op's self device time already holds the kernels it launched; the kernels' own events (and the GPU
    side of annotations) are left out, else every kernel would count twice (seen on an H200)."""
    op = SimpleNamespace(name="aten::mm", device_type=DeviceType.CPU)
    kernel = SimpleNamespace(name="sm80_xmma_gemm_f32f32", device_type=DeviceType.CUDA)
    annotation = SimpleNamespace(name="Optimizer.step#AdamW.step", device_type=DeviceType.CUDA)
    assert _op_events([op, kernel, annotation], cuda=True) == [op]
    assert _op_events([op], cuda=False) == [op]


def test_profile_train_step_adds_up_and_separates_the_parts(tmp_path):
    out = tmp_path / "p"
    assert main(["litv2_nano", "resnet18", "--profile", "--mode", "train", *TINY, "--out", str(out)]) == 0
    record = json.loads((out / "profile.json").read_text())
    lit, res = record["profiles"]["litv2_nano"], record["profiles"]["resnet18"]
    for p in (lit, res):
        assert sum(p["categories"].values()) == pytest.approx(p["total_ms"])
        assert p["categories"][OPTIMIZER] > 0  # a train step ends with AdamW
        assert p["categories"]["GEMM (linear, matmul)"] > 0
    assert lit["categories"][DEPTHWISE] > 0 and lit["categories"]["deformable conv (DTM)"] > 0
    assert res["categories"][DEPTHWISE] == 0 and res["categories"][CONV] > lit["categories"][CONV]
    table = (out / "profile.md").read_text()
    assert table.startswith("# Per-op profile: train, fp32, batch 2, 32px, 1 threads")
    assert "| depthwise conv (+ fused GELU) |" in table and "Top ops of resnet18" in table
    # what the profiler does to the step: the unprofiled wall time and page faults stand beside its figures
    assert lit["unprofiled_ms"] > 0 and res["unprofiled_ms"] > 0
    assert "| wall time per step, unprofiled |" in table
    if sys.platform.startswith("linux"):
        assert lit["faults_unprofiled"] >= 0 and lit["faults_profiled"] >= 0
        assert "| minor page faults per step, unprofiled / profiled |" in table


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts Linux's minor page faults")
def test_faults_per_step_counts_pages_touched_for_the_first_time():
    size, page = 8 << 20, mmap.PAGESIZE

    def touch_fresh_pages() -> None:
        with mmap.mmap(-1, size) as m:  # anonymous memory: each page faults in at its first write
            for i in range(0, size, page):
                m[i] = 1

    assert _faults_per_step(touch_fresh_pages, repeats=2) >= 0.9 * (size // page) / 2
    assert _faults_per_step(lambda: None, repeats=1) < 100


def test_profile_inference_has_no_optimizer(tmp_path):
    out = tmp_path / "p"
    assert main(["litv2_nano", "--profile", *TINY, "--out", str(out)]) == 0
    p = json.loads((out / "profile.json").read_text())["profiles"]["litv2_nano"]
    assert p["categories"][OPTIMIZER] == 0 and p["total_ms"] > 0


@pytest.mark.parametrize("flags", [["--runtime", "int8"], ["--compile"]])
def test_profile_refuses_other_runtimes(tmp_path, capsys, flags):
    assert main(["litv2_nano", "--profile", *flags, *TINY, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--profile profiles eager models" in err and "Traceback" not in err


def test_bf16_warning_only_where_the_cpu_lacks_native_bf16(monkeypatch):
    from litvit.bench import machine

    monkeypatch.setattr(machine, "cpu_flags", lambda: ["fma", "avx2"])
    assert machine.native_bf16() is False
    assert "no native bf16" in machine.bf16_warning("cpu", "bf16")
    assert machine.bf16_warning("cpu", "fp32") is None and machine.bf16_warning("cuda", "bf16") is None
    monkeypatch.setattr(machine, "cpu_flags", lambda: ["avx2", "avx512f", "avx512_bf16"])
    assert machine.native_bf16() is True and machine.bf16_warning("cpu", "bf16") is None
    monkeypatch.setattr(machine, "cpu_flags", lambda: [])
    assert machine.native_bf16() is None and machine.bf16_warning("cpu", "bf16") is None


def test_int8_warning_only_on_x86_without_int8_dot_products(monkeypatch):
    from litvit.bench import machine

    monkeypatch.setattr(machine, "cpu_flags", lambda: ["fma", "avx2"])  # AVX2-only AMD EPYC
    assert "no int8 dot-product" in machine.int8_warning("cpu", ["eager", "onnxruntime-int8"])
    assert "no int8 dot-product" in machine.int8_warning("cpu", ["int8+bf16"])
    assert machine.int8_warning("cpu", ["eager", "onnxruntime"]) is None
    assert machine.int8_warning("cuda", ["int8"]) is None
    for flags in (["avx2", "avx512f", "avx512_vnni"], ["avx2", "avx_vnni"], ["avx2", "amx_int8"], [], ["asimd"]):
        monkeypatch.setattr(machine, "cpu_flags", lambda flags=flags: flags)
        assert machine.int8_warning("cpu", ["int8"]) is None, flags


def test_the_profile_is_taken_again_only_while_its_steps_fault_more_than_plain_ones():
    assert not _settled(101_147, 2)  # LITv2-S fp32 inference, batch 16, first profiled cycle on an AMD EPYC
    assert _settled(512, 0) and _settled(9_000, 7_032)
    assert _settled(None, 0) and _settled(5, None)  # no fault counter (Windows): one cycle
