"""`litvit export --check`: run an exported file at several sizes and batches and compare it with the PyTorch model.

The sizes are chosen to catch a graph that was right only at its tracing size: odd sides that need padding at the
patch embedding and in the HiLo windows (97x131, 100x37, 150x250), the smallest side the model (or, for `.pt2` and
AOTInductor packages, the dynamic program) accepts, and odd batches (1, 3). The tolerance is relative to the
output's scale: max |export - PyTorch| <= tolerance * max(1, max |PyTorch|).
"""

import os
from typing import Any, Callable, List, NamedTuple, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from ..errors import ExportError
from .program import size_limits

__all__ = ["DEFAULT_TOLERANCE", "CheckRow", "check_export", "check_sizes", "format_rows"]

DEFAULT_TOLERANCE = 1e-4  # fp32: the runtimes agree with PyTorch to ~1e-6 of the output scale


class CheckRow(NamedTuple):
    batch: int
    height: int
    width: int
    max_diff: float
    scale: float  # max |PyTorch output|
    ok: bool


def check_sizes(model: nn.Module, fmt: str, static_size: Union[Tuple[int, int], None] = None) -> List[Tuple[int, ...]]:
    """(batch, H, W) cases for a format: a static export is checked at its size only (batches 1 and 3)."""
    if static_size is not None:
        return [(1, *static_size), (3, *static_size)]
    limits = size_limits(model)
    smallest = limits.eager_min if fmt == "onnx" else limits.dynamic_min
    cases = [(1, 97, 131), (3, 100, 37), (1, 150, 250), (3, smallest, smallest), (1, smallest, smallest + 37)]
    if fmt != "onnx":  # a dynamic program refuses sides below dynamic_min
        cases = [(b, max(h, smallest), max(w, smallest)) for b, h, w in cases]
    return cases


def _runner(path: Union[str, os.PathLike], fmt: str) -> Callable[[torch.Tensor], List[np.ndarray]]:
    """A function image -> list of output arrays for the exported file."""
    if fmt == "onnx":
        from .onnx import require

        require("onnxruntime")
        import onnxruntime as ort

        session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: list(session.run(None, {name: x.numpy()}))
    if fmt == "pt2":
        module = torch.export.load(os.fspath(path)).module()
    elif fmt == "aoti":
        import torchvision  # noqa: F401 - the package calls torchvision's registered deform_conv2d
        from torch._inductor import aoti_load_package

        module = aoti_load_package(os.fspath(path))
    else:
        raise ExportError(f"unknown format {fmt!r}: choose onnx, pt2 or aoti")
    return lambda x: [t.detach().numpy() for t in _as_list(module(x))]


def _as_list(out: Any) -> List[torch.Tensor]:
    return [out] if isinstance(out, torch.Tensor) else list(out)


def check_export(
    model: nn.Module,
    path: Union[str, os.PathLike],
    fmt: str,
    cases: Union[Sequence[Tuple[int, int, int]], None] = None,
    tolerance: float = DEFAULT_TOLERANCE,
    seed: int = 0,
) -> List[CheckRow]:
    """Run the exported file and the model (eval, fp32, CPU) on the same random images; one row per case."""
    run = _runner(path, fmt)
    cases = list(cases) if cases is not None else check_sizes(model, fmt)
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    rows = []
    try:
        for batch, h, w in cases:
            x = torch.randn(batch, getattr(model, "in_chans", 3), h, w, generator=generator)
            with torch.no_grad():
                ref = [t.numpy() for t in _as_list(model(x))]
            got = run(x)
            diff = max(float(np.abs(a - b).max(initial=0.0)) for a, b in zip(got, ref))
            scale = max(float(np.abs(r).max(initial=0.0)) for r in ref)
            rows.append(
                CheckRow(batch, h, w, diff, scale, len(got) == len(ref) and diff <= tolerance * max(1.0, scale))
            )
    finally:
        model.train(was_training)
    return rows


def format_rows(rows: Sequence[CheckRow], tolerance: float) -> str:
    lines = [f"{'batch':>5} {'size':>9} {'max |diff|':>11} {'max |ref|':>10}  (tolerance {tolerance:g} x max(1, ref))"]
    for r in rows:
        size = f"{r.height}x{r.width}"
        lines.append(f"{r.batch:>5} {size:>9} {r.max_diff:>11.3g} {r.scale:>10.3g}  {'ok' if r.ok else 'FAIL'}")
    return "\n".join(lines)
