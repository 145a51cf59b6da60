"""ONNX export through torch's dynamo exporter (the TorchScript exporter has no `torchvision::deform_conv2d`).

The traced program of litvit.export.program is translated with opset >= 19, where the deformable token merging is
ONNX's own `DeformConv` (TensorRT reads it natively; onnxruntime has a CPU kernel from 1.25). The translation of
`torchvision::deform_conv2d` is litvit's own, so every supported torch / onnxscript writes the same graph.
"""

import collections
import contextlib
import importlib
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Union

import torch
from torch import nn

from ..errors import ExportError, one_line
from ..layers.attention import RelPosAttention
from .program import Size, check_writable, trace, write_atomically

__all__ = ["DEFAULT_OPSET", "MIN_OPSET", "export_onnx", "require"]

MIN_OPSET = 19  # the first opset with DeformConv
DEFAULT_OPSET = 20  # 19 + native Gelu; read by onnxruntime >= 1.17 and TensorRT >= 10


def require(*modules: str) -> None:
    """Every module importable, else the one line that says how to install them."""
    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ExportError(f"{' and '.join(missing)} not installed: pip install 'litvit[deploy]'")


def _deform_conv2d(
    input: Any,
    weight: Any,
    offset: Any,
    mask: Any,
    bias: Any,
    stride_h: int,
    stride_w: int,
    pad_h: int,
    pad_w: int,
    dilation_h: int,
    dilation_w: int,
    groups: int,
    offset_groups: int,
    use_mask: bool,
) -> Any:
    """torchvision::deform_conv2d -> ONNX DeformConv (opset 19): the same inputs (x, w, offsets, bias, optional
    modulation mask), offsets laid out (y, x) per tap in both, padding symmetric per axis as torchvision's."""
    from onnxscript import opset19

    return opset19.DeformConv(
        input,
        weight,
        offset,
        bias,
        mask if use_mask else None,
        dilations=[dilation_h, dilation_w],
        strides=[stride_h, stride_w],
        pads=[pad_h, pad_w, pad_h, pad_w],
        group=groups,
        offset_group=offset_groups,
    )


def _sym_not(x: Any) -> Any:
    """torch.sym_not -> ONNX Not: torch 2.6's exporter leaves the negation of a dropped runtime size check in the
    graph (unused) and has no translation for it."""
    from onnxscript import opset19

    return opset19.Not(x)


def _without_runtime_checks(program: Any) -> Any:
    """Drop the traced runtime size checks (always true at valid sizes, see litvit.export.program): ONNX has no
    assertions, and torch 2.6's exporter cannot translate the symbolic arithmetic that only feeds them."""
    graph = program.graph_module.graph
    asserts = (torch.ops.aten._assert_scalar.default, torch.ops.aten._assert_async.msg)
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target in asserts:
            graph.erase_node(node)
    graph.eliminate_dead_code()
    program.graph_module.recompile()
    return program


def _fold_weight_unsqueezes(path: Path) -> None:
    """Rewrite the ONNX file at `path` with each Unsqueeze of an initializer (by constant axes, its only user)
    replaced by the unsqueezed initializer: LITv2's FFN weights as 1x1 conv kernels (`DWConvMlp`).

    Why: the exporter leaves `Unsqueeze(fc1.weight)` in front of the Conv. ONNX Runtime folds it when it loads a
    session, but its quantiser (`quantize_onnx_int8`) only quantises a layer whose weight is an initializer, and
    other runtimes read a constant kernel more easily than a computed one."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    users = collections.Counter(name for node in graph.node for name in node.input)
    outputs = {o.name for o in graph.output}
    folded = [
        n
        for n in graph.node
        if n.op_type == "Unsqueeze"
        and len(n.input) == 2
        and all(i in inits for i in n.input)
        and users[n.input[0]] == 1
        and n.output[0] not in outputs
    ]
    renamed = {}
    for node in folded:  # the kernel keeps the weight's name (e.g. layers.0.blocks.0.mlp.fc1.weight)
        weight, axes = (numpy_helper.to_array(inits[i]) for i in node.input)
        graph.initializer.remove(inits.pop(node.input[0]))
        graph.initializer.append(numpy_helper.from_array(np.expand_dims(weight, tuple(axes.tolist())), node.input[0]))
        renamed[node.output[0]] = node.input[0]
        graph.node.remove(node)
    for node in graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]
    stale = set(renamed) | set(renamed.values())  # shapes recorded for the 2-D weight and the Unsqueeze output
    for info in [v for v in graph.value_info if v.name in stale]:
        graph.value_info.remove(info)
    still_used = {name for node in graph.node for name in node.input}
    for axes in {n.input[1] for n in folded} - still_used:
        graph.initializer.remove(inits.pop(axes))
    if folded:
        onnx.save(model, str(path))


def _has_resized_tables(model: nn.Module) -> bool:
    """LIT's relative-position tables or LIT-Ti's position embeddings: resized to the map size inside the graph."""
    return hasattr(model, "pos_embed1") or any(isinstance(m, RelPosAttention) for m in model.modules())


@contextlib.contextmanager
def _quiet_version_converter() -> Iterator[None]:
    """Keep onnxscript's version converter from printing a traceback where it cannot reach the opset asked: the
    written file's check (`_check_operators`) says so in one line."""
    log = logging.getLogger("onnxscript.version_converter")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _check_operators(path: Path, opset: int) -> None:
    """Refuse a graph with an operator its opset does not have. Where the exporter's version converter cannot reach
    the opset asked (opset 26 with torch 2.14), it keeps the graph at its own opset 18 with newer operators in it
    (Gelu), and the file would fail to load in every runtime."""
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as e:
        raise ExportError(
            f"torch {torch.__version__}'s ONNX exporter cannot write opset {opset} ({one_line(e)}): pass a lower "
            f"--opset (the default is {DEFAULT_OPSET})"
        ) from None


def export_onnx(
    model: nn.Module,
    path: Union[str, os.PathLike],
    example_size: Size = None,
    dynamic: bool = True,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write `model` as an ONNX file (input `image` (B, 3, H, W)); returns the path.

    `dynamic`: batch, height and width are symbolic, and the graph is right at every size the eager model accepts
    (>= `model.min_input_size`); otherwise height and width are fixed at `example_size` (batch stays dynamic).
    """
    require("onnx", "onnxscript")
    if not isinstance(opset, int) or opset < MIN_OPSET:
        raise ExportError(f"opset {opset!r} has no DeformConv: pass --opset {MIN_OPSET} or more")
    import onnx

    if opset > onnx.defs.onnx_opset_version():
        raise ExportError(
            f"torch {torch.__version__}'s ONNX exporter cannot write opset {opset} (onnx {onnx.__version__} knows "
            f"opsets up to {onnx.defs.onnx_opset_version()}): pass a lower --opset (the default is {DEFAULT_OPSET})"
        )
    check_writable(path)
    # LITv2's FFNs as convolutions: ONNX Runtime keeps a chain of convolutions in its blocked layout (DWConvMlp)
    program = _without_runtime_checks(trace(model, example_size, dynamic, pointwise_as_conv=True))
    import torchvision  # noqa: F401 - registers torch.ops.torchvision

    try:
        with _quiet_version_converter():
            onnx_program = torch.onnx.export(
                program,
                dynamo=True,
                opset_version=opset,
                input_names=["image"],
                custom_translation_table={
                    torch.ops.torchvision.deform_conv2d.default: _deform_conv2d,
                    torch.sym_not: _sym_not,
                },
            )
    except Exception:
        if dynamic and _has_resized_tables(model):
            raise ExportError(
                f"torch {torch.__version__}'s ONNX exporter cannot resize {type(model).__name__}'s size-specific "
                "position tables to a dynamic size (torch 2.14 can): export one size with --static --size HxW "
                "(right at that size only, any sides >= 29), use --format pt2, or upgrade torch"
            ) from None
        raise
    opsets = onnx_program.model.opset_imports
    if opsets.get("", 0) < MIN_OPSET:
        # torch 2.6 writes every graph at opset 18 whatever is asked. Opset 19 changed none of the operators such a
        # graph uses but by adding types or modes, so the graph means the same at 19, where DeformConv exists. The
        # graph's local functions import the standard domain too, and must import the same version as the model.
        opsets[""] = MIN_OPSET
        for function in onnx_program.model.functions.values():
            if "" in function.opset_imports:
                function.opset_imports[""] = MIN_OPSET

    def write(p: Path) -> None:
        onnx_program.save(str(p))
        _fold_weight_unsqueezes(p)
        _check_operators(p, opset)

    return write_atomically(path, write, ".onnx")
