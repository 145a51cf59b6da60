"""ONNX through the dynamo exporter: every family, dynamic batch / height / width, compared in onnxruntime."""

import pytest
import torch

from litvit.errors import ExportError
from litvit.export import export_onnx
from litvit.export.check import check_export
from litvit.export.program import trace
from litvit.runtime import torch_older_than

from .conftest import SIZES, tiny_model

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")

FAMILIES = ("litv2", "lit", "lit_ti", "lit_backbone")


# torch 2.6's ONNX exporter cannot decompose a bicubic / bilinear resize to a symbolic size ("SymIntArrayRef expected
# to contain only concrete integers"): LIT's tables and LIT-Ti's embeddings export dynamically from a newer torch
# (2.14 tested) and with a fixed size (--static) on 2.6, where litvit refuses the dynamic export with that fix.
OLD_TORCH = torch_older_than(2, 7)
RESIZED_TABLES = ("lit", "lit_ti", "lit_backbone")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """family -> (model, ONNX path), each exported once (traced at 64 x 64)."""
    folder = tmp_path_factory.mktemp("onnx")
    out = {}
    for family in FAMILIES:
        if OLD_TORCH and family in RESIZED_TABLES:
            continue
        model = tiny_model(family)
        out[family] = model, export_onnx(model, folder / f"{family}.onnx", 64)
    return out


@pytest.mark.skipif(not OLD_TORCH, reason="torch 2.6 only: newer torch exports the resized tables dynamically")
def test_old_torch_refuses_dynamic_resized_tables_and_names_the_fix(tmp_path):
    with pytest.raises(ExportError, match="--static --size HxW"):
        export_onnx(tiny_model("lit_ti"), tmp_path / "x.onnx", 64)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("family", FAMILIES)
def test_onnxruntime_matches_pytorch_at_every_size(exported, family):
    if family not in exported:
        pytest.skip("torch 2.6's ONNX exporter cannot resize tables to a symbolic size (see RESIZED_TABLES)")
    """Odd sides that need padding, 1 x N last maps, the smallest accepted side, odd batches: all within 1e-5.

    Before the layers computed their padding from the symbolic sizes, an export traced at 64 x 64 was silently
    wrong at 100 x 37 (the padding of the tracing size baked in) and failed at 150 x 250."""
    model, path = exported[family]
    rows = check_export(model, path, "onnx", SIZES, tolerance=1e-5)
    assert all(r.ok for r in rows), rows
    assert all(r.scale > 0.01 for r in rows)  # real outputs, not zeros compared with zeros


def test_graph_uses_deform_conv_at_opset_19_or_more(exported):
    model = onnx.load(str(exported["litv2"][1]))
    opset = {o.domain: o.version for o in model.opset_import}[""]
    ops = [n.op_type for n in model.graph.node]
    assert opset >= 19
    assert ops.count("DeformConv") == 3  # one per token merge
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert model.graph.input[0].name == "image" and dims[1] == 3
    assert all(isinstance(d, str) and d for d in (dims[0], dims[2], dims[3]))  # batch, height, width symbolic


def test_litv2_ffn_is_written_as_three_convolutions_with_constant_kernels(exported):
    """DWConvMlp exports as Conv 1x1 -> depthwise Conv -> Gelu -> Conv 1x1 (ONNX Runtime keeps such a chain in its
    blocked layout), each kernel an initializer, so the int8 quantiser takes it."""
    model, path = exported["litv2"]
    graph = onnx.load(str(path)).graph
    inits = {i.name: tuple(i.dims) for i in graph.initializer}
    ffns = [m for m in model.modules() if type(m).__name__ == "DWConvMlp"]
    assert len(ffns) == 5  # depths 1, 1, 2, 1
    expected = [(fc.out_features, fc.in_features, 1, 1) for m in ffns for fc in (m.fc1, m.fc2)]
    conv_weights = [n.input[1] for n in graph.node if n.op_type == "Conv"]
    assert len(conv_weights) >= 3 * len(ffns)
    matmul_weights = [inits.get(i) for n in graph.node if n.op_type in ("MatMul", "Gemm") for i in n.input]
    assert not {w[::-1] for w in matmul_weights if w} & {k[:2] for k in expected}  # no FFN linear left as MatMul
    if OLD_TORCH:
        return  # torch 2.6 writes the kernels' unsqueeze as a local function (ONNX Runtime inlines it at load)
    assert all(w in inits for w in conv_weights)
    assert sorted(inits[w] for w in conv_weights if inits[w][2:] == (1, 1)) == sorted(expected)


def test_weight_unsqueezes_are_folded_into_named_kernels(tmp_path):
    """Where the exporter leaves Unsqueeze(weight) in front of a Conv (large weights), the file is rewritten with the
    kernel as an initializer under the weight's name, and the shared axes constant dropped."""
    from onnx import TensorProto, helper, numpy_helper

    from litvit.export.onnx import _fold_weight_unsqueezes

    w = numpy_helper.from_array(torch.randn(4, 3).numpy(), "mlp.fc1.weight")
    axes = numpy_helper.from_array(torch.tensor([2, 3]).numpy(), "axes")
    nodes = [
        helper.make_node("Unsqueeze", ["mlp.fc1.weight", "axes"], ["k"]),
        helper.make_node("Conv", ["x", "k"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 5, 5])],
        [w, axes],
        value_info=[helper.make_tensor_value_info("mlp.fc1.weight", TensorProto.FLOAT, [4, 3])],
    )
    path = tmp_path / "g.onnx"
    # IR 10 (opset 20 needs >= 9): onnx writes its newest IR by default, which an older onnxruntime refuses to load
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)
    onnx.save(model, str(path))
    x = torch.randn(1, 3, 5, 5).numpy()
    import onnxruntime as ort

    before = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    _fold_weight_unsqueezes(path)
    folded = onnx.load(str(path)).graph
    assert [n.op_type for n in folded.node] == ["Conv"] and folded.node[0].input[1] == "mlp.fc1.weight"
    assert [(i.name, tuple(i.dims)) for i in folded.initializer] == [("mlp.fc1.weight", (4, 3, 1, 1))]
    after = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert (before == after).all()


def test_static_export_is_right_at_its_size(tmp_path):
    """--static: height and width fixed (any size the model accepts, even below the dynamic minimum), batch free."""
    model = tiny_model("lit")
    path = export_onnx(model, tmp_path / "static.onnx", (37, 45), dynamic=False)
    rows = check_export(model, path, "onnx", [(1, 37, 45), (3, 37, 45)], tolerance=1e-5)
    assert all(r.ok for r in rows), rows
    dims = [d.dim_value for d in onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim]
    assert dims[2:] == [37, 45]


def test_litv2_is_unchanged_by_tracing_its_ffns_as_convolutions():
    model = tiny_model("litv2")
    trace(model, 64, dynamic=False, pointwise_as_conv=True)
    assert not any("pointwise_as_conv" in vars(m) or "_fusable" in vars(m) for m in model.modules())
    assert not any(getattr(m, "pointwise_as_conv", False) for m in model.modules())


def test_eager_model_is_unchanged_by_tracing():
    """Tracing restores the model: train mode, the fused CPU path of the FFN, no fake tensor left in a cache."""
    model = tiny_model("lit").train()
    x = torch.randn(2, 3, 40, 52)  # a size whose relative-position index is built (and, eagerly, cached)
    trace(model, (40, 52), dynamic=False)
    assert model.training
    assert not any("_fusable" in vars(m) for m in model.modules())
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), tiny_model("lit")(x), rtol=0, atol=0)
