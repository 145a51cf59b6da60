"""Static int8 (PT2E, x86 inductor quantizer): the quantised LITv2 agrees with fp32 within the stated bound, compiled
or not, and a missing PT2E is one line naming the extra."""

import dataclasses

import pytest
import timm
import torch

import litvit.export.quantize as quantize
from litvit.bench.agreement import agreement, digits_batches, photo_batches
from litvit.data.transforms import data_config, eval_transform
from litvit.errors import ExportError
from litvit.runtime import torch_older_than

from .conftest import tiny_model

# The bound this test holds a random-weight tiny LITv2 to (the trained digits model does far better:
# docs/deploy.md): the top-1 of >= 90% of the held-out images, and logits within 10% of their largest magnitude.
MIN_AGREEMENT = 0.9
MAX_REL_DIFF = 0.1


def _has_pt2e() -> bool:
    try:
        return quantize.pt2e_api() is not None
    except ExportError:
        return False


def _compilable() -> bool:
    try:
        quantize.check_compilable()
        return True
    except ExportError:
        return False


needs_pt2e = pytest.mark.skipif(not _has_pt2e(), reason="needs litvit[deploy] (torchao) with this torch")
needs_torchao = pytest.mark.skipif(not _compilable(), reason="compiled int8: torch >= 2.10 with torchao")


@pytest.fixture(scope="module")
def tiny_fp32():
    """litv2_nano at 32 px (HiLo, deformable token merging, ConvFFN) and its digits eval transform."""
    torch.manual_seed(0)
    model = timm.create_model("litv2_nano", img_size=32, num_classes=10).eval()
    return model, eval_transform(data_config(model, img_size=32))


@pytest.fixture(scope="module")
def tiny(tiny_fp32):
    """`tiny_fp32` and its PT2E int8."""
    model, transform = tiny_fp32
    calibration = digits_batches(transform, "train", batch=16)[:2]
    return model, transform, quantize.quantize_int8(model, calibration)


@needs_pt2e
def test_int8_agrees_with_fp32_on_held_out_digits_and_photos(tiny):
    model, transform, qmodel = tiny
    for batches in (digits_batches(transform, "val", batch=16)[:3], photo_batches(transform, 16, batch=8)):
        res = agreement(model, qmodel, batches)
        assert res["top1_agreement"] >= MIN_AGREEMENT, res
        assert 0 < res["max_abs_logit_diff"] <= MAX_REL_DIFF * res["max_abs_logit"], res
    # the graph is int8: quantize / dequantize pairs around the linears and convolutions
    targets = {str(n.target) for n in qmodel.graph.nodes if n.op == "call_function"}
    assert any("quantize_per_tensor" in t for t in targets), sorted(targets)[:20]


@needs_torchao
def test_compiled_int8_matches_the_reference_int8_graph(tiny):
    model, transform, qmodel = tiny
    (x,) = digits_batches(transform, "val", batch=8)[:1]
    fast = quantize.compile_int8(qmodel)
    res = agreement(qmodel, fast, [x])
    assert res["max_abs_logit_diff"] <= MAX_REL_DIFF * res["max_abs_logit"], res
    assert fast(x[:1]).shape == (1, 10)  # another batch size: the export's batch dimension is dynamic


@needs_pt2e
@pytest.mark.parametrize("family", ["litv2", "lit", "lit_ti"])
def test_every_linear_layer_is_int8_and_token_merging_is_plain_ops(family):
    """The quantizer sees litvit's `Linear` subclass as `nn.Linear` (it once left all but the classifier in fp32,
    and the compiled int8 LITv2-S ran slower than eager fp32), and DTM is traced as the gather (plain ops that
    inductor fuses) in place of torchvision's kernel, its GEMM in int8 too. The model keeps its own classes and
    paths afterwards."""
    from litvit.layers.fused_cpu import Linear

    model = tiny_model(family)
    kinds = {name: type(m) for name, m in model.named_modules()}
    x = torch.randn(2, 3, 64, 64)
    qmodel = quantize.quantize_int8(model, [x])
    linears = [n for n in qmodel.graph.nodes if n.target == torch.ops.aten.linear.default]
    int8 = [n for n in linears if "dequantize_per_channel" in str(n.args[1].target)]
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    merges = [m for m in model.modules() if hasattr(m, "conv_offset")]  # DTM's GEMM: a linear no module calls
    assert len(linears) == len(int8) == len(layers) + len(merges), (len(linears), len(int8), len(layers), len(merges))
    assert family != "litv2" or any(isinstance(m, Linear) for m in layers)  # HiLo's and the FFN's are the subclass
    targets = {str(n.target) for n in qmodel.graph.nodes if n.op == "call_function"}
    assert not any("deform_conv2d" in t for t in targets) and any("index_select" in t for t in targets)
    assert {n: type(m) for n, m in model.named_modules()} == kinds
    assert not any("_gather_fp32" in vars(m) for m in model.modules())


@needs_torchao
@pytest.mark.skipif(not quantize.ONEDNN_BF16, reason="oneDNN has no bf16 kernels on this CPU (AVX2 only)")
def test_int8_with_bf16_compiles_and_agrees(tiny):
    """int8+bf16 (the un-quantised layers in bf16): possible since DTM is traced as plain ops (torchvision's CPU
    deform_conv2d has no bf16 kernel)."""
    model, transform, qmodel = tiny
    (x,) = digits_batches(transform, "val", batch=8)[:1]
    res = agreement(model, quantize.compile_int8(qmodel, torch.bfloat16), [x])
    assert res["max_abs_logit_diff"] <= MAX_REL_DIFF * res["max_abs_logit"], res


@needs_torchao
def test_int8_with_bf16_is_refused_where_onednn_has_no_bf16(tiny, monkeypatch):
    """AVX2-only CPUs: oneDNN cannot build an int8 matmul with bf16 output there; refused at the call, in one line."""
    monkeypatch.setattr(quantize, "ONEDNN_BF16", False)
    with pytest.raises(ExportError, match="int8 with bf16 needs oneDNN's bf16 kernels"):
        quantize.compile_int8(tiny[2], torch.bfloat16)


def test_calibration_needs_images():
    with pytest.raises(ExportError, match="at least one batch"):
        quantize.quantize_int8(torch.nn.Linear(2, 2), [])


@needs_pt2e
def test_compiling_with_torch_ao_is_refused(monkeypatch):
    """torch 2.6's inductor int8 kernels crash on LITv2: the torch.ao path quantises but does not compile."""
    torch_ao = dataclasses.replace(quantize.pt2e_api(), provider="torch.ao")
    monkeypatch.setattr(quantize, "pt2e_api", lambda: torch_ao)
    with pytest.raises(ExportError, match="compiled int8 needs torchao's PT2E") as e:
        quantize.compile_int8(torch.nn.Linear(2, 2))
    assert "pip install 'litvit[deploy]'" in str(e.value) and "\n" not in str(e.value)


def test_missing_pt2e_names_the_extra(monkeypatch):
    def fail(prefix, provider):
        raise ImportError(prefix)

    monkeypatch.setattr(quantize, "_load", fail)
    with pytest.raises(ExportError, match=r"pip install 'litvit\[deploy\]'") as e:
        quantize.pt2e_api()
    assert "\n" not in str(e.value)


def test_reduce_range_only_on_x86_without_vnni(monkeypatch):
    for flags, expected in [
        (["fma", "avx2"], True),  # AVX2 only: u8 x s8 pairs saturate int16 sums at full range
        (["avx2", "avx512f", "avx512_vnni"], False),
        (["avx2", "avx_vnni"], False),
        (["avx2", "avx512f", "amx_int8"], False),
        ([], False),  # unknown (no /proc/cpuinfo): torch's default
    ]:
        monkeypatch.setattr(quantize, "cpu_flags", lambda flags=flags: flags)
        assert quantize.needs_reduce_range() is expected, flags


# ------------------------------------------------------------------------------- onnxruntime static int8 (QDQ ONNX)


def _has_onnx_stack() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript", "onnxruntime"))


OLD_TORCH = torch_older_than(2, 7)  # torch 2.6's ONNX graph: onnxruntime cannot calibrate it


@pytest.mark.skipif(not _has_onnx_stack(), reason="needs litvit[deploy] (onnx, onnxscript, onnxruntime)")
@pytest.mark.skipif(OLD_TORCH, reason="onnxruntime int8 needs torch >= 2.7's ONNX graph (refusal tested below)")
def test_onnx_int8_agrees_with_fp32_and_keeps_deform_conv_fp32(tiny_fp32, tmp_path):
    import onnx
    import onnxruntime as ort

    from litvit.export import export_onnx

    model, transform = tiny_fp32
    fp32 = export_onnx(model, tmp_path / "m.onnx", 32, dynamic=False)
    calibration = digits_batches(transform, "train", batch=16)[:2]
    path = quantize.quantize_onnx_int8(fp32, tmp_path / "m.int8.onnx", calibration)
    assert path == tmp_path / "m.int8.onnx" and sorted(p.name for p in tmp_path.iterdir()) == ["m.int8.onnx", "m.onnx"]
    graph = onnx.load(str(path)).graph
    ops = [n.op_type for n in graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops and "DeformConv" in ops
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    ffn_convs = [n for n in convs if ".mlp." in n.input[1]]
    assert ffn_convs and all(n.input[1] in dequantized for n in ffn_convs)  # the FFN's 1x1 / depthwise kernels: s8
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"image": x.numpy()})[0])

    for batches in (digits_batches(transform, "val", batch=16)[:3], photo_batches(transform, 16, batch=8)):
        res = agreement(model, run, batches)
        assert res["top1_agreement"] >= MIN_AGREEMENT, res
        assert 0 < res["max_abs_logit_diff"] <= MAX_REL_DIFF * res["max_abs_logit"], res


def test_onnx_int8_refused_before_torch_2_7(monkeypatch, tmp_path):
    monkeypatch.setattr(quantize, "torch_older_than", lambda major, minor: True)
    with pytest.raises(ExportError, match=r"needs torch >= 2.7's ONNX exporter.*use --runtime int8"):
        quantize.quantize_onnx_int8(tmp_path / "m.onnx", tmp_path / "q.onnx", [torch.zeros(1, 3, 32, 32)])
    assert not (tmp_path / "q.onnx").exists()


@pytest.mark.skipif(OLD_TORCH, reason="refused before torch 2.7 (tested above)")
def test_onnx_int8_bad_input_is_one_line(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    with pytest.raises(ExportError, match="at least one batch"):
        quantize.quantize_onnx_int8(tmp_path / "m.onnx", tmp_path / "q.onnx", [])
    (tmp_path / "bad.onnx").write_bytes(b"not a protobuf at all")
    for src in (tmp_path / "missing.onnx", tmp_path / "bad.onnx"):
        with pytest.raises(ExportError, match="is not a readable ONNX file") as info:
            quantize.quantize_onnx_int8(src, tmp_path / "q.onnx", [torch.zeros(1, 3, 32, 32)])
        assert "\n" not in str(info.value) and str(src) in str(info.value)
    assert not (tmp_path / "q.onnx").exists()
