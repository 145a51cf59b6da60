"""Static int8 for CPU inference: PT2E quantisation with the x86 inductor quantizer, calibrated on images, then
`torch.compile` (inductor lowers the quantize / dequantize pairs to oneDNN int8 kernels; AMX / VNNI where the CPU
has them). For ONNX Runtime, `quantize_onnx_int8` does the same to an exported ONNX file.

    qmodel = quantize_int8(model, calibration_batches)   # exported, observed, converted (reference int8 graph)
    fast = compile_int8(qmodel)                          # the fast one: torch.compile with weight freezing
    logits = fast(images)

Why PT2E and not eager-mode or dynamic quantisation: the exported graph lets the quantizer see whole patterns
(linear + bias, conv + activation), quantise activations as well as weights (static, from the calibration), and
hand inductor a graph it fuses. The int8 layers are the linears and convolutions; LayerNorm, softmax, attention,
GELU and DTM's bilinear sampling stay in fp32 (or bf16 with `amp=torch.bfloat16`).

Where PT2E lives moved between torch releases: torch 2.6 (the declared floor) has it in `torch.ao.quantization`;
torch 2.14 has it no more, and it lives in torchao (`torchao.quantization.pt2e`). `pt2e_api` takes torchao's where
it imports (torchao 0.18 needs a recent torch: with torch 2.6 its import fails), else torch's own, and names
`pip install 'litvit[deploy]'` when neither exists.
"""

import contextlib
import importlib
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Union

import torch
from torch import nn

from ..cpu import cpu_flags, x86_without_int8_dot_product
from ..errors import ExportError, one_line
from ..layers.fused_cpu import ONEDNN_BF16
from ..runtime import torch_older_than
from .program import _tracing, write_atomically

INSTALL = "pip install 'litvit[deploy]'"
MAX_BATCH = 4096  # the largest batch a quantised graph accepts


@dataclass(frozen=True)
class PT2E:
    """The PT2E entry points of one provider (torchao, or torch.ao for torch < 2.10)."""

    provider: str  # 'torchao' or 'torch.ao'
    prepare_pt2e: Callable[..., Any]
    convert_pt2e: Callable[..., Any]
    quantizer: Callable[[], Any]  # a configured X86InductorQuantizer
    to_eval: Callable[[Any], Any]


def needs_reduce_range() -> bool:
    """Whether activations must be quantised to 7 bits: x86 CPUs without VNNI / AMX-INT8 multiply u8 x s8 pairs into
    int16 sums (vpmaddubsw) that saturate at full 8-bit range, so oneDNN's int8 kernels would disagree with the
    reference graph (measured on an AVX2-only AMD EPYC: 75% top-1 agreement, logits off by 18% of their range)."""
    return x86_without_int8_dot_product(cpu_flags())


LAYOUT_OPS = ("permute", "reshape", "view", "t", "transpose", "contiguous", "clone")


def _from_constant(node: Any) -> bool:
    """Whether an FX node is a parameter (get_attr) seen through layout ops only (LAYOUT_OPS): a weight the
    conversion folds into an int8 constant."""
    while isinstance(node, torch.fx.Node) and node.op == "call_function":
        name = getattr(node.target, "__name__", str(node.target)).split(".")[0]
        if name not in LAYOUT_OPS:
            return False
        node = node.args[0]
    return isinstance(node, torch.fx.Node) and node.op == "get_attr"


def _load(prefix: str, provider: str) -> PT2E:
    q = importlib.import_module(f"{prefix}.quantize_pt2e")
    x86 = importlib.import_module(f"{prefix}.quantizer.x86_inductor_quantizer")
    to_eval = importlib.import_module(prefix if provider == "torchao" else "torch.ao.quantization")

    class Quantizer(x86.X86InductorQuantizer):  # type: ignore[name-defined,misc]
        """The x86 inductor quantizer, and the linears it does not find: those with a constant weight that no
        `nn.Linear` module calls (DTM's GEMM on its sampled columns, whose weight is the conv kernel reordered).
        In fp32 they took 30 of the ~330 ms of a compiled int8 LITv2-S step (batch 16, AMD EPYC, 2 threads)."""

        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            model = super().annotate(model)
            annotate_linear = getattr(self, "_annotate_linear_node_helper", None)  # private: absent, do without
            for node in model.graph.nodes:
                if (
                    annotate_linear is not None
                    and node.target == torch.ops.aten.linear.default
                    and "quantization_annotation" not in node.meta
                    and _from_constant(node.args[1])
                ):
                    annotate_linear(node, True, self.global_config)
            return model

    def quantizer() -> Any:
        quant = Quantizer()
        reduce = {"reduce_range": True} if needs_reduce_range() else {}
        quant.set_global(x86.get_default_x86_inductor_quantization_config(is_qat=False, is_dynamic=False, **reduce))
        return quant

    return PT2E(provider, q.prepare_pt2e, q.convert_pt2e, quantizer, to_eval.move_exported_model_to_eval)


def pt2e_api() -> PT2E:
    """torchao's PT2E where installed (torch >= 2.10 has no other), else torch's own; ExportError if neither."""
    for prefix, provider in (("torchao.quantization.pt2e", "torchao"), ("torch.ao.quantization", "torch.ao")):
        try:
            return _load(prefix, provider)
        except Exception:  # noqa: BLE001  (a torchao built for another torch fails at import with AttributeError & co)
            continue
    raise ExportError(f"int8 quantisation needs torchao with torch {torch.__version__}: {INSTALL}")


def check_compilable(amp: Optional[torch.dtype] = None) -> None:
    """Compiled int8 needs torchao's PT2E (torch >= 2.10): torch 2.6's inductor int8 kernels crash the process
    (heap corruption) on LITv2, so the torch.ao path stops here with one line instead. With `amp=torch.bfloat16` it
    needs oneDNN's bf16 kernels (AVX-512 and newer) too: on an AVX2-only CPU oneDNN has no int8 matmul with bf16
    output ("could not create a primitive descriptor", AMD EPYC family 23 model 49)."""
    if amp is torch.bfloat16 and not ONEDNN_BF16:
        raise ExportError(
            "int8 with bf16 needs oneDNN's bf16 kernels (AVX-512 or newer), which this CPU lacks: use int8 alone"
        )
    api = pt2e_api()
    if api.provider != "torchao":
        raise ExportError(
            f"compiled int8 needs torchao's PT2E (torch >= 2.10; torch {torch.__version__}'s inductor int8 kernels "
            f"crash on LITv2): upgrade torch, then {INSTALL}"
        )


@contextlib.contextmanager
def _linears_as_nn_linear(model: nn.Module) -> Iterator[None]:
    """Every subclass of `nn.Linear` in `model` (litvit's `layers.fused_cpu.Linear`, whose traced forward is plain
    `F.linear`) presented as `nn.Linear` itself while the model is exported; restored afterwards.

    Why: the x86 inductor quantizer finds linears by the module type that called them, `nn.Linear` exactly, so it
    left every linear of LITv2 in fp32 but the classifier (LIT and LIT-Ti use `nn.Linear` itself): the
    compiled int8 LITv2-S ran 60 fp32 GEMMs and was slower than eager fp32 (0.80x, AMD EPYC with AVX512-VNNI, torch
    2.14.1, torchao 0.18); seen as `nn.Linear`, they run as oneDNN int8 GEMMs (docs/performance.md)."""
    subclassed = [(m, type(m)) for m in model.modules() if isinstance(m, nn.Linear) and type(m) is not nn.Linear]
    try:
        for m, _ in subclassed:
            m.__class__ = nn.Linear
        yield
    finally:
        for m, cls in subclassed:
            m.__class__ = cls


def _export(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """The model as an exported training-IR graph module (what prepare_pt2e annotates), batch dynamic, height and
    width fixed at `example`'s (the compiled int8 graph is specialised to one size anyway).

    The layers take their plain path (`program._tracing`: no fused oneDNN conv + GELU, which the quantizer cannot
    see through), the deformable token merging as plain ops that inductor fuses (torchvision's kernel and its
    im2col GEMM took 147 of the 447 ms of a compiled int8 LITv2-S step, batch 16, AMD EPYC, 2 threads; as plain
    ops ~40 ms), HiLo's attention as plain ops that inductor fuses or hands to batched GEMMs (`HiLo._for_compiler`;
    SDPA took ~37 of ~300 ms), and the linears as `nn.Linear` (`_linears_as_nn_linear`). A model whose code pins
    the batch size is exported for `example`'s batch only.
    """
    # torch 2.6: export_for_training, strict (its non-strict graph lacks the metadata the quantizer matches, and
    # nothing gets quantised); later: torch.export.export, non-strict (the default since 2.9).
    legacy = getattr(torch.export, "export_for_training", None)
    export = partial(legacy, strict=True) if legacy is not None else partial(torch.export.export, strict=False)
    # A finite upper bound: torch 2.6 otherwise fails on a guard "batch != 2**63 - 1" it cannot prove.
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with _tracing(model, gather_dtm=True, attention_for_compiler=True), _linears_as_nn_linear(model):
        try:
            return export(model, (example,), dynamic_shapes=({0: batch},)).module()
        except Exception:  # noqa: BLE001  (a constraint violation: the graph pins the batch; export it static)
            return export(model, (example,)).module()


def _calibration_batches(calibration: Iterable[torch.Tensor]) -> List[torch.Tensor]:
    """The calibration image batches as a list, or one ExportError line when there are none."""
    batches = list(calibration)
    if not batches:
        raise ExportError("int8 calibration needs at least one batch of images: pass a few (e.g. 32 images)")
    return batches


def quantize_int8(model: nn.Module, calibration: Iterable[torch.Tensor]) -> nn.Module:
    """Static int8 of `model` (eval mode, fp32, on the CPU): export, observe `calibration` (image batches, the
    model's normalised input), convert. The result runs the reference int8 graph (slow: fake quantised fp32);
    `compile_int8` makes it fast."""
    batches = _calibration_batches(calibration)
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise ExportError("int8 PT2E quantisation runs on the CPU: move the model there first (model.cpu())")
    api = pt2e_api()
    model = model.eval()
    with torch.no_grad():
        exported = _export(model, batches[0])
        prepared = api.prepare_pt2e(exported, api.quantizer())
        for x in batches:
            prepared(x)
        converted = api.convert_pt2e(prepared)
    api.to_eval(converted)
    return converted


def compile_frozen(
    model: nn.Module, amp: Optional[torch.dtype] = None, cpp_wrapper: bool = False
) -> Callable[[torch.Tensor], torch.Tensor]:
    """`model` compiled by inductor with weight freezing, as a function of an image batch (no grad; under `amp`
    autocast if given): the weights become constants of the graph, so inductor folds what depends on them alone
    (BatchNorm into the conv before it; int8 weights pre-packed for oneDNN). The first call of each input shape
    compiles (tens of seconds on two cores); the weights must not change afterwards.

    Freezing must be on in the global config while a shape compiles, which happens at the call:
    torch.compile(options={"freezing": ...}) leaves the weight pre-packing un-folded (inductor then fails on
    onednn.qconv_prepack, torch 2.14). The backend is a function of its own because dynamo keys its cache by the
    forward's code and the backend: under plain "inductor", another instance of the same class compiled without
    freezing would hand over its graph. `cpp_wrapper`: inductor's C++ wrapper calls the kernels instead of Python
    (`compile_int8` takes it: see there)."""
    import torch._inductor.config as inductor_config
    from torch._inductor.compile_fx import compile_fx

    def backend(gm: torch.fx.GraphModule, example_inputs: List[torch.Tensor]) -> Callable[..., Any]:
        return compile_fx(gm, example_inputs)

    compiled = torch.compile(model, backend=backend, dynamic=False)  # per shape: torch 2.6 crashes on dynamic int8

    def run(x: torch.Tensor) -> torch.Tensor:
        ctx = torch.autocast("cpu", dtype=amp) if amp is not None else contextlib.nullcontext()
        with torch.no_grad(), ctx, inductor_config.patch(freezing=True, cpp_wrapper=cpp_wrapper):
            return compiled(x)

    return run


def compile_int8(qmodel: nn.Module, amp: Optional[torch.dtype] = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The quantised graph compiled by inductor with weight freezing (`compile_frozen`: int8 weights pre-packed for
    oneDNN), as a function of an image batch. `amp=torch.bfloat16`: the layers left un-quantised run in bf16
    (int8-mixed-bf16; for LIT / LITv2 too, since `_export` traces the token merging as plain ops: torchvision's
    CPU deform_conv2d has no bf16 kernel).
    The first call of each input shape compiles (tens of seconds on two cores).

    With inductor's C++ wrapper: an int8 step is ~300 kernel calls, and calling them from C++ instead of Python
    took LITv2-S's batch-1 latency from 35 to 31-35 ms and its batch-16 step from 316-319 to 290-304 ms (int8+bf16,
    AMD EPYC with AVX512-BF16, 2 threads, torch 2.14.1), and compiled faster (45 vs 52 s). `check_compilable` says
    where it cannot run."""
    check_compilable(amp)
    return compile_frozen(qmodel, amp, cpp_wrapper=True)


ONNX_INT8_OPS = ("MatMul", "Gemm", "Conv")  # with a constant weight: the int8 layers, as PT2E's


def check_onnx_int8() -> None:
    """onnxruntime's quantiser needs the ONNX graph of torch >= 2.7's exporter: on torch 2.6's (its attention
    decomposed with shape arithmetic) onnxruntime's calibration run fails ("Shape mismatch attempting to re-use
    buffer" at a Concat; onnxruntime 1.25), while torch 2.14's graph quantises with onnxruntime 1.25 and 1.32."""
    if torch_older_than(2, 7):
        raise ExportError(
            f"onnxruntime int8 needs torch >= 2.7's ONNX exporter (onnxruntime cannot calibrate torch "
            f"{torch.__version__}'s graph of the attention): upgrade torch, or use --runtime int8"
        )


def _weight_layers(model: Any) -> List[str]:
    """Names of the ONNX nodes to quantise: linears and convolutions (ONNX_INT8_OPS with a constant weight) except
    the classifier, the node that writes a graph output.

    The attention products (MatMul of two activations, 28 in LITv2-S) stay fp32 as in PT2E. So does the classifier:
    on a random tiny LITv2 its int8 alone put the logits 17% of their range off (the rest: 5%), and it is one small
    GEMM per image."""
    graph = model.graph
    constants = {i.name for i in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    outputs = {o.name for o in graph.output}
    return [
        n.name
        for n in graph.node
        if n.op_type in ONNX_INT8_OPS
        and len(n.input) > 1
        and n.input[1] in constants
        and not outputs.intersection(n.output)
    ]


def quantize_onnx_int8(
    src: Union[str, os.PathLike], dst: Union[str, os.PathLike], calibration: Iterable[torch.Tensor]
) -> Path:
    """Static int8 of an exported ONNX model (`export_onnx`) by onnxruntime's quantiser, calibrated on image
    batches (the model's normalised input); returns `dst`, written atomically.

    QDQ format (QuantizeLinear / DequantizeLinear pairs that onnxruntime fuses into int8 kernels), weights s8 per
    output channel, activations u8 from min / max calibration; 7-bit activations on x86 CPUs without VNNI (see
    `needs_reduce_range`). It quantises the linears and convolutions but the classifier (`_weight_layers`);
    attention, normalisation, GELU and DTM's DeformConv stay fp32. onnxruntime's
    pre-processing (symbolic shape inference) is skipped: it has no rule for DeformConv.
    """
    from .onnx import require

    require("onnx", "onnxruntime")
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    check_onnx_int8()
    batches = [b.detach().cpu().float().numpy() for b in _calibration_batches(calibration)]
    try:
        graph = onnx.load(str(src))
    except Exception as e:  # noqa: BLE001  (missing file, or not an ONNX protobuf)
        raise ExportError(f"{src} is not a readable ONNX file ({one_line(e)}): export one with litvit export") from None
    name, layers = graph.graph.input[0].name, _weight_layers(graph)

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = iter(batches)

        def get_next(self) -> Optional[Dict[str, Any]]:
            batch = next(self.left, None)
            return None if batch is None else {name: batch}

    def write(path: Path) -> None:
        quantize_static(
            str(src),
            str(path),
            Batches(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(ONNX_INT8_OPS),
            nodes_to_quantize=layers,
            per_channel=True,
            reduce_range=needs_reduce_range(),
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )

    return write_atomically(dst, write, ".onnx")
