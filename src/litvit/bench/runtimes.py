"""Inference runtimes for `litvit bench --runtime`: the same model timed as PyTorch eager, `torch.compile` (plain, or
with inductor's weight freezing), ONNX Runtime, an AOTInductor package, or static int8 (PT2E + inductor), in one
interleaved run.

Each runtime turns a built model and its input into a `nn.Module` whose forward runs that runtime, so the harness's
one step (`subject.make_step`) times all of them alike. Which runtimes can run here is checked before anything is
built (`check_runtimes`): a missing optional dependency is one line naming `pip install 'litvit[deploy]'`.

Runtime names and the checks that need no torch live in `config.py` (RUNTIMES); this module loads with the
benchmark.
"""

import importlib.util
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from ..errors import BenchError, LitvitError, one_line
from ..export.quantize import INSTALL
from ..runtime import autocast

Batches = List[torch.Tensor]

# runtime -> the modules it imports (checked up front)
NEEDS: Dict[str, Tuple[str, ...]] = {
    "onnxruntime": ("onnx", "onnxscript", "onnxruntime"),
    "onnxruntime-int8": ("onnx", "onnxscript", "onnxruntime"),
    "int8": (),  # torch.ao (torch <= 2.9) or torchao: checked by quantize.pt2e_api
}
COMPILING = ("compile", "frozen", "aoti", "int8")  # need a C/C++ compiler on the CPU
CPU_ONLY = ("onnxruntime", "onnxruntime-int8", "int8")
FP32_ONLY = ("onnxruntime", "onnxruntime-int8", "aoti")  # exported graphs: their precision is fixed at export


def check_runtime(rt: str, device: torch.device, amp: Optional[torch.dtype], mode: str) -> None:
    """What this machine, device, precision and mode allow of runtime `rt`, before anything is built (one line per
    problem; unknown names are config.check_counts's)."""
    if rt not in ("eager", "compile") and mode != "infer":
        raise BenchError(f"--runtime {rt} times inference only: use --mode infer (or --runtime eager / compile)")
    if rt in CPU_ONLY and device.type != "cpu":
        raise BenchError(f"--runtime {rt} runs on the CPU only: add --device cpu or drop {rt}")
    if rt in FP32_ONLY and amp is not None:
        raise BenchError(f"--runtime {rt} runs the exported fp32 graph: use --dtype fp32 or drop {rt}")
    if rt in COMPILING and device.type == "cpu" and not any(shutil.which(c) for c in ("cc", "gcc", "clang")):
        raise BenchError(f"--runtime {rt} on CPU needs a C/C++ compiler (gcc or clang) on PATH; install one")
    missing = [m for m in NEEDS.get(rt, ()) if importlib.util.find_spec(m) is None]
    if missing:
        raise BenchError(f"--runtime {rt} needs {', '.join(missing)}: {INSTALL}")
    if rt == "int8":
        from ..export.quantize import check_compilable

        check_compilable(amp)  # ExportError naming the extra without torchao's PT2E, or int8+bf16 without bf16 kernels
    if rt == "onnxruntime-int8":
        from ..export.quantize import check_onnx_int8

        check_onnx_int8()  # ExportError naming the torch it needs


class Runtime(nn.Module):
    """A callable (the runtime's compiled / exported model) as a module, so that `make_step` times it as any other;
    it has no parameters of its own."""

    def __init__(self, fn: Callable[[torch.Tensor], Any], name: str, keep: Any = None) -> None:
        super().__init__()
        self.fn, self.name, self.keep = fn, name, keep  # keep: what must outlive the call (a temp dir, a session)

    def forward(self, x: torch.Tensor) -> Any:
        return self.fn(x)


def _onnxruntime(model: nn.Module, x: torch.Tensor, calibration: Optional[Batches] = None) -> Runtime:
    """litvit.export's ONNX graph (height and width fixed at the benchmark's, batch dynamic) in an ONNX Runtime
    CPU session with all graph optimisations and torch's thread count; with `calibration` (image batches), that
    graph quantised to static int8 by onnxruntime (`export.quantize.quantize_onnx_int8`)."""
    import onnxruntime as ort

    from ..export import export_onnx

    tmp = tempfile.TemporaryDirectory(prefix="litvit-bench-onnx-")
    path = export_onnx(model, Path(tmp.name) / "model.onnx", example_size=tuple(x.shape[-2:]), dynamic=False)
    if calibration is not None:
        from ..export.quantize import quantize_onnx_int8

        path = quantize_onnx_int8(path, path.with_name("model.int8.onnx"), calibration)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {name: images.numpy()})[0])

    return Runtime(run, "onnxruntime" if calibration is None else "onnxruntime-int8", keep=(tmp, session))


def _aoti(model: nn.Module, x: torch.Tensor) -> Runtime:
    """litvit.export's AOTInductor package (height and width fixed, batch dynamic), loaded back."""
    import torchvision  # noqa: F401  (registers the deform_conv2d kernel the package calls)
    from torch._inductor import aoti_load_package

    from ..export import export_aoti

    tmp = tempfile.TemporaryDirectory(prefix="litvit-bench-aoti-")
    path = export_aoti(model, Path(tmp.name) / "model.pt2", example_size=tuple(x.shape[-2:]), dynamic=False)
    return Runtime(aoti_load_package(str(path)), "aoti", keep=tmp)


def _frozen(model: nn.Module) -> Runtime:
    """`torch.compile` with inductor's weight freezing (`export.quantize.compile_frozen`; inference only). The
    harness applies autocast around the call for `frozen+bf16`."""
    from ..export.quantize import compile_frozen

    return Runtime(compile_frozen(model), "frozen")


def _int8(model: nn.Module, x: torch.Tensor, amp: Optional[torch.dtype], calibration: Optional[Batches]) -> Runtime:
    """Calibrated on `calibration` (image batches), else on the benchmark's own input: right for speed; the
    accuracy cost on real images is benchmarks/deploy.py's."""
    from ..export.quantize import compile_int8, quantize_int8

    return Runtime(compile_int8(quantize_int8(model, calibration or [x]), amp), "int8")


def build_runtime(
    runtime: str,
    model: nn.Module,
    x: torch.Tensor,
    amp: Optional[torch.dtype],
    calibration: Optional[Batches] = None,
) -> Tuple[nn.Module, Dict[str, Any]]:
    """(the module the step calls, facts for the row). Non-eager runtimes run once here on `x` (under `amp`), so
    that their export / compile is timed apart from the steps (`prepare_s`), and report their largest logit
    difference from eager fp32 on it."""
    if runtime == "eager":
        return model, {}
    model = model.eval()
    t0 = time.perf_counter()
    try:
        if runtime == "compile":
            module: nn.Module = torch.compile(model, dynamic=False)
        elif runtime == "frozen":
            module = _frozen(model)
        elif runtime == "onnxruntime":
            module = _onnxruntime(model, x)
        elif runtime == "onnxruntime-int8":  # calibrated as int8 is (see _int8)
            module = _onnxruntime(model, x, calibration or [x])
        elif runtime == "aoti":
            module = _aoti(model, x)
        elif runtime == "int8":
            module = _int8(model, x, amp, calibration)
        else:
            raise BenchError(f"unknown runtime {runtime!r}")
        with torch.inference_mode():
            with autocast(x.device, amp):
                out = module(x).float()
            ref = model(x).float()
    except LitvitError:
        raise
    except Exception as e:  # noqa: BLE001  (an exporter or compiler failure: one line naming the model and runtime)
        raise BenchError(f"--runtime {runtime} failed to build this model ({one_line(e)}); drop {runtime}") from None
    facts = {
        "prepare_s": time.perf_counter() - t0,
        "max_abs_logit_diff": float((out - ref).abs().max()),
        "top1_agreement": float((out.argmax(-1) == ref.argmax(-1)).float().mean()),
    }
    return module, facts
