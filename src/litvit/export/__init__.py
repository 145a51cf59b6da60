"""`litvit export`: deployable forms of a litvit model, all from one `torch.export` trace.

    from litvit.export import export_onnx, export_program, export_aoti
    export_onnx(model, "litv2_s.onnx", example_size=224, dynamic=True)    # onnxruntime, TensorRT (DeformConv)
    export_program(model, "litv2_s.pt2")                                   # torch.export.load(...).module()
    export_aoti(model, "litv2_s.aoti.pt2")                                 # torch._inductor.aoti_load_package

`program` traces (and writes .pt2 / AOTInductor packages), `onnx` translates to ONNX, `check` compares an export
with PyTorch at several sizes and batches, `cli` is the command (no torch imported). docs/deploy.md says which
sizes each format serves and which runtimes read it.
"""

from typing import Any

from ..errors import ExportError

__all__ = [
    "ExportError",
    "check_export",
    "export_aoti",
    "export_onnx",
    "export_program",
    "size_limits",
]

_LAZY = {
    "export_onnx": "onnx",
    "export_program": "program",
    "export_aoti": "program",
    "size_limits": "program",
    "check_export": "check",
}


def __getattr__(name: str) -> Any:
    # The functions import torch; loading them on first use keeps `litvit export --help` (litvit.export.cli) instant.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
