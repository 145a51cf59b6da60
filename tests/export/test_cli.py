"""`litvit export`: a written file that --check accepts, and one-line errors (exit 2, nothing written)."""

import sys

import pytest
import torch

from litvit.cli import main

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def test_export_and_check(tmp_path, capsys):
    """The written program is checked at odd sizes and batches (the ONNX runner is tested in test_onnx.py)."""
    out = tmp_path / "nano.pt2"
    argv = ["export", "--model", "litv2_nano", "--format", "pt2", "--size", "64", "--out", str(out), "--check"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert out.is_file() and f"wrote {out}" in text
    assert "97x131" in text and "FAIL" not in text and text.count(" ok") == 5
    assert [p.name for p in tmp_path.iterdir()] == ["nano.pt2"]  # no temporary file left


def _error(argv, capsys) -> str:
    assert main(["export", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_an_opset_the_exporter_cannot_reach_is_refused_and_nothing_written(tmp_path, capsys):
    """Past the installed onnx's newest opset: refused before exporting (torch 2.6 would write 19 regardless)."""
    err = _error(
        ["--model", "litv2_nano", "--opset", "99", "--size", "32", "--static", "--out", str(tmp_path / "x.onnx")],
        capsys,
    )
    assert "cannot write opset 99" in err and "pass a lower --opset" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_written_graph_with_operators_its_opset_lacks_is_refused(tmp_path):
    """Where torch's converter cannot reach the opset asked (26 with torch 2.14), it keeps an opset-18 graph with
    newer operators in it (Gelu, opset 20): a file no runtime loads. Every written file is checked for that."""
    import onnx
    from onnx import TensorProto, helper

    from litvit.errors import ExportError
    from litvit.export.onnx import _check_operators

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Gelu", ["x"], ["y"])], "g", [x], [y])
    path = tmp_path / "gelu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9), path)
    with pytest.raises(ExportError, match="cannot write opset 26 .*Gelu.*pass a lower --opset"):
        _check_operators(path, 26)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=9), path)
    _check_operators(path, 20)  # Gelu exists at 20


def test_errors_are_one_line(tmp_path, capsys, monkeypatch):
    out = ["--out", str(tmp_path / "x.onnx")]
    assert "unknown model 'litv9_s'" in _error(["--model", "litv9_s", *out], capsys)
    assert "has no dense backbone" in _error(["--model", "litv2_nano", "--backbone", "det", *out], capsys)

    weights = tmp_path / "nano.pth"
    torch.save({"model": __import__("timm").create_model("litv2_nano").state_dict()}, weights)
    err = _error(["--model", "lit_ti", "--checkpoint", str(weights), *out], capsys)
    assert "lit_ti" in err or "litv2_nano" in err

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert "cannot write" in _error(["--model", "litv2_nano", "--out", str(blocker / "x.onnx")], capsys)
    assert "cannot write" in _error(["--model", "litv2_nano", "--out", str(tmp_path)], capsys)
    assert "--static exports one fixed size" in _error(["--model", "litv2_nano", "--static", *out], capsys)
    assert "bad size" in _error(["--model", "litv2_nano", "--size", "0x3", *out], capsys)
    assert "no DeformConv" in _error(["--model", "litv2_nano", "--opset", "17", *out], capsys)
    assert "--tolerance must be a number > 0" in _error(["--model", "litv2_nano", "--tolerance", "-1", *out], capsys)

    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if the [deploy] extra were not installed
    assert "pip install 'litvit[deploy]'" in _error(["--model", "litv2_nano", *out], capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "nano.pth"]
