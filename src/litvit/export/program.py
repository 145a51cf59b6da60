"""`torch.export` of a litvit model: the one traced program behind every format (`.pt2`, AOTInductor, ONNX).

The batch is always dynamic; height and width are dynamic too unless a fixed size is asked for. The layers compute
their padding (patch embedding, HiLo windows), crops, relative-position tables (LIT) and position embeddings (LIT-Ti)
from the symbolic sizes (`litvit.layers._shapes`), so one program is right at every size in its range, not only
at the size it was traced at.

Sizes. The eager model takes any side >= `min_input_size` (29 for the released four-stage models: a 2x2 map before
the last token merge). `torch.export` specialises sizes 0 and 1, and the last stage's map is 1 x N below
`dynamic_min`: a dynamic program (`.pt2`, AOTI) therefore accepts sides >= `dynamic_min` (61 for the released
models) and refuses smaller ones with a clear message. Export a fixed size (`dynamic=False`) to serve 29..60. The
ONNX graph has no such check and is right down to `min_input_size` (litvit.export.check verifies it).
"""

import contextlib
import inspect
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Sequence, Tuple, Union

import torch
from torch import nn

from ..checkpoint import atomic_write, writable
from ..errors import ExportError
from ..layers.patch_embed import PatchEmbed
from ..options import to_2tuple

__all__ = ["SizeLimits", "size_limits", "example_input", "trace", "export_program", "export_aoti", "write_atomically"]

Size = Union[int, Sequence[int], None]


class SizeLimits(NamedTuple):
    """Smallest image side a model accepts eagerly, and the smallest a dynamic-size exported program accepts."""

    eager_min: int
    dynamic_min: int


def size_limits(model: nn.Module) -> SizeLimits:
    """The size limits of a litvit classifier or dense backbone (any family, reduced configurations too)."""
    eager_min = getattr(model, "min_input_size", None)
    stages = getattr(model, "num_stages", None)
    patch = next((m.patch_size for m in model.modules() if isinstance(m, PatchEmbed)), None)
    if eager_min is None or stages is None or patch is None:
        raise ExportError(f"{type(model).__name__} is not a litvit model: export a LIT, LIT-Ti or LITv2 model")
    # The last stage's map is ceil(side / patch) halved (stages - 1) times; it is at least 2 from this side on.
    return SizeLimits(int(eager_min), patch * (2**stages - 1) + 1)


def example_input(model: nn.Module, example_size: Size = None, batch: int = 2) -> torch.Tensor:
    """A random image batch at `example_size` (default: the model's `img_size`, else 224) on the model's device."""
    size = example_size if example_size is not None else getattr(model, "img_size", None) or 224
    try:
        h, w = to_2tuple(size, "example_size")
    except ValueError as e:
        raise ExportError(str(e)) from None
    limits = size_limits(model)
    if min(h, w) < limits.eager_min:
        raise ExportError(
            f"example size {h}x{w} is smaller than {type(model).__name__} accepts: both sides must be at least "
            f"{limits.eager_min}"
        )
    param = next(model.parameters())
    in_chans = getattr(model, "in_chans", 3)
    return torch.randn(batch, in_chans, h, w, device=param.device, dtype=param.dtype)


def _never(*args: Any) -> bool:
    return False


def _always(*args: Any) -> bool:
    return True


@contextlib.contextmanager
def _tracing(
    model: nn.Module, pointwise_as_conv: bool = False, gather_dtm: bool = False, attention_for_compiler: bool = False
) -> Iterator[None]:
    """Eval mode, and the plain path of layers that have an inference-only fused CPU kernel (`_fusable`: oneDNN
    conv + GELU in LITv2's FFN), which no exporter can translate; with `pointwise_as_conv`, LITv2's FFNs written as
    convolutions (`DWConvMlp._forward_as_convs`); with `gather_dtm`, the deformable token merging as plain ops
    (`dtm.deform_conv2x2_s2_gather`: torchvision's sampling arithmetic, which a compiler fuses) in place of
    torchvision's op (which ONNX needs, as `DeformConv`); with `attention_for_compiler`, HiLo's attention as plain
    ops inductor fuses (`HiLo._for_compiler`) in place of SDPA. All restored afterwards."""
    was_training = model.training
    fusable = [m for m in model.modules() if hasattr(type(m), "_fusable")]
    as_conv = [m for m in model.modules() if hasattr(type(m), "pointwise_as_conv")] if pointwise_as_conv else []
    gather = [m for m in model.modules() if hasattr(type(m), "_gather_fp32")] if gather_dtm else []
    plain = [m for m in model.modules() if hasattr(type(m), "_for_compiler")] if attention_for_compiler else []
    model.eval()
    try:
        for m in fusable:
            m._fusable = _never
        for m in as_conv:
            m.pointwise_as_conv = True
        for m in gather:
            m._gather_fp32 = _always
        for m in plain:
            m._for_compiler = _always
        yield
    finally:
        for m in fusable:
            del m._fusable
        for m in as_conv:
            del m.pointwise_as_conv
        for m in gather:
            del m._gather_fp32
        for m in plain:
            del m._for_compiler
        model.train(was_training)


def trace(model: nn.Module, example_size: Size = None, dynamic: bool = True, pointwise_as_conv: bool = False) -> Any:
    """`torch.export.ExportedProgram` of `model` (eval mode): dynamic batch, and dynamic height / width in
    [dynamic_min, inf) unless `dynamic` is False (then height and width are fixed at `example_size`).
    `pointwise_as_conv`: LITv2's FFNs as three convolutions (the ONNX export's graph; the same arithmetic)."""
    limits = size_limits(model)
    if dynamic and example_size is None:  # a model built for small inputs (a 32 px run) is traced where all sizes are
        h, w = to_2tuple(getattr(model, "img_size", None) or 224)
        example_size = (max(h, limits.dynamic_min), max(w, limits.dynamic_min))
    x = example_input(model, example_size)
    if dynamic and min(x.shape[-2:]) < limits.dynamic_min:
        raise ExportError(
            f"a dynamic-size export is traced at a size of at least {limits.dynamic_min}x{limits.dynamic_min} "
            f"(got {x.shape[-2]}x{x.shape[-1]}): pass a larger example size, or export the fixed size (--static)"
        )
    Dim = torch.export.Dim
    shapes = {0: Dim("batch", min=1)}
    if dynamic:
        shapes.update({2: Dim("height", min=limits.dynamic_min), 3: Dim("width", min=limits.dynamic_min)})
    with _tracing(model, pointwise_as_conv):
        return _export(model, (x,), (shapes,))


def _export(model: nn.Module, args: Tuple[torch.Tensor, ...], dynamic_shapes: Tuple[Any, ...]) -> Any:
    """Non-strict `torch.export`, where a guard the solver cannot prove over the whole range (e.g. "a padded side
    is >= the side") becomes a runtime check instead of an error. The layers' size arithmetic makes every such
    guard true at every size; the switch has another name in torch 2.6."""
    kwargs = dict(dynamic_shapes=dynamic_shapes, strict=False)
    if "prefer_deferred_runtime_asserts_over_guards" in inspect.signature(torch.export.export).parameters:
        return torch.export.export(model, args, prefer_deferred_runtime_asserts_over_guards=True, **kwargs)
    from torch.export._trace import _export as export_with_asserts  # torch < 2.7

    return export_with_asserts(model, args, allow_complex_guards_as_runtime_asserts=True, **kwargs)


def write_atomically(path: Union[str, os.PathLike], write: Any, suffix: str) -> Path:
    """Write a file through `write(tmp_path)` so that `path` is complete or untouched; `suffix` is the name ending a
    writer insists on (AOTInductor wants `.pt2`). An unwritable path is an ExportError naming it."""
    path = Path(path)

    def through_named_temp(tmp: Path) -> None:
        with tempfile.TemporaryDirectory(dir=tmp.parent, prefix=".litvit-export-") as folder:
            named = Path(folder) / f"out{suffix}"
            write(named)
            shutil.move(str(named), str(tmp))

    try:
        atomic_write(path, through_named_temp)
    except OSError as e:
        raise ExportError(f"{e.strerror or e}: choose a writable output path") from None
    return path


def check_writable(path: Union[str, os.PathLike]) -> None:
    """Fail before a slow export when the output cannot be written (a missing folder is created later)."""
    if not writable(path):
        raise ExportError(f"cannot write {str(path)!r}: choose a writable output path (a file, not a folder)")


def export_program(
    model: nn.Module, path: Union[str, os.PathLike], example_size: Size = None, dynamic: bool = True
) -> Path:
    """Write `model` as a `torch.export` program (`torch.export.load(path).module()(x)` runs it); returns the path."""
    check_writable(path)
    program = trace(model, example_size, dynamic)
    return write_atomically(path, lambda p: torch.export.save(program, str(p)), ".pt2")


def export_aoti(
    model: nn.Module, path: Union[str, os.PathLike], example_size: Size = None, dynamic: bool = True
) -> Path:
    """Compile `model` ahead of time with AOTInductor into a package (`.pt2`) that runs without litvit:
    `torch._inductor.aoti_load_package(path)(x)`. `import torchvision` first in the runner: the deformable token
    merging calls torchvision's registered `deform_conv2d` kernel. Compiling takes minutes on a few CPU cores."""
    check_writable(path)
    program = trace(model, example_size, dynamic)

    def compile_to(p: Path) -> None:
        from torch._inductor import aoti_compile_and_package

        aoti_compile_and_package(program, package_path=str(p))

    return write_atomically(path, compile_to, ".pt2")
