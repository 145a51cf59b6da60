"""What the harness measures: a subject (a model, or an attention layer at one token grid), the step timed on it,
and that step's MACs.

The two benchmarks differ only in their `Kind`: how a subject is named, built and fed, what the table says about
it, and which ratios it gets. Everything else (validation, timing, memory, the record) is the runner's, for both;
the memory child builds its subject with the same `build_subject`.
"""

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .. import flops as _flops  # noqa: F401  (registers litvit's FlopCounterMode formulas, e.g. deform_conv2d)
from ..runtime import autocast
from .config import BenchConfig

Spec = Dict[str, Any]  # JSON-ready: {"kind": ..., "name": ..., ...}; the memory child rebuilds the subject from it
Loss = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Subject:
    key: str  # the task name: 'litv2_s', 'hilo@14x14'
    spec: Spec
    module: nn.Module
    x: torch.Tensor  # one batch


class Kind(Protocol):
    """The subject-specific half of a benchmark (`models.ModelKind`, `attention.LayerKind`)."""

    record: str  # the record's "kind": 'models' or 'attention'
    cpu_batch: int  # default batch on CPU (64 on GPU)
    per_call_mode: bool  # set the module's train/eval flag at every call (models), or once when built (layers)
    # Bytes an inference step holds at once, at least, per byte of its input: how a size too large for the machine is
    # refused before it is built (models ~30x: LITv2-S's 17.8 MB per 224 image; layers ~5x: HiLo's 50 MB per 56 map).
    memory_per_input_byte: int
    latency: bool  # time batch-1 inference too

    def validate(self, cfg: BenchConfig) -> BenchConfig: ...  # its own checks; may resolve defaults

    def specs(self, cfg: BenchConfig) -> List[Spec]: ...

    def key(self, spec: Spec) -> str: ...

    def build(self, spec: Spec) -> nn.Module: ...  # on the CPU, seeded

    def input_shape(self, spec: Spec, batch: int) -> Tuple[int, ...]: ...

    def loss(self) -> Loss: ...  # the train step's loss

    def cannot_run(self, spec: Spec, error: str) -> str: ...  # the one-line message when building it fails

    def describe(self, subject: Subject, cfg: BenchConfig, amp: Optional[torch.dtype]) -> Dict[str, Any]: ...

    def compare(self, rows: Dict[str, Dict[str, Any]], raw: Dict[str, Any], cfg: BenchConfig) -> None: ...


def make_input(shape: Tuple[int, ...], device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(shape, generator=g).to(device)


def build_subject(
    kind: Kind,
    spec: Spec,
    batch: int,
    device: torch.device,
    mode: str,
    inputs: Optional[Dict[Tuple[int, ...], torch.Tensor]] = None,
) -> Subject:
    """The subject on `device` with its input (shared through `inputs` between subjects of one input shape)."""
    module = kind.build(spec).to(device)
    if not kind.per_call_mode:
        module.train(mode == "train")
    shape = kind.input_shape(spec, batch)
    cache = {} if inputs is None else inputs
    if shape not in cache:
        cache[shape] = make_input(shape, device)
    return Subject(kind.key(spec), spec, module, cache[shape])


def square_mean_loss(out: torch.Tensor) -> torch.Tensor:
    return out.float().square().mean()


def cross_entropy_loss() -> Loss:
    """Cross-entropy against fixed random labels, drawn at the first call (when the number of classes is known)."""
    target: Optional[torch.Tensor] = None

    def loss(out: torch.Tensor) -> torch.Tensor:
        nonlocal target
        if target is None:
            g = torch.Generator().manual_seed(0)
            target = torch.randint(0, out.shape[-1], (out.shape[0],), generator=g).to(out.device)
        return F.cross_entropy(out.float(), target)

    return loss


def make_step(
    module: nn.Module,
    x: torch.Tensor,
    mode: str,
    amp: Optional[torch.dtype],
    loss_fn: Loss = square_mean_loss,
    per_call_mode: bool = True,
) -> Callable[[], Any]:
    """The measured call. infer: forward under inference_mode (+ autocast to `amp`). train: zero_grad, forward
    (+ autocast), `loss_fn`, backward, AdamW step (GradScaler for fp16).

    With `per_call_mode` the module's train/eval flag is set at each call (cheap), so that a model can serve a train
    step and an inference latency task in the same run.
    """
    device = x.device
    if mode == "infer":

        def infer() -> Any:
            if per_call_mode:
                module.train(False)
            with torch.inference_mode(), autocast(device, amp):
                return module(x)

        return infer

    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-5)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)

    def train() -> Any:
        if per_call_mode:
            module.train(True)
        opt.zero_grad(set_to_none=True)
        with autocast(device, amp):
            out = module(x)
        loss = loss_fn(out)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss

    return train


def counted_flops(counter: FlopCounterMode) -> int:
    """FlopCounterMode's total, with convolution backward counted as twice the forward convolutions.

    torch's formula for `aten.convolution_backward` ignores `groups` (up to torch 2.15 at least): a depthwise 3x3
    conv's backward comes out ~C/2 times too large (LITv2-S: 50 GMACs instead of 0.14). Grad-input plus grad-weight
    of a convolution cost twice its forward (less for a first layer whose input needs no gradient).
    """
    counts = {str(k): v for k, v in counter.get_flop_counts().get("Global", {}).items()}
    total = counter.get_total_flops()
    bwd = counts.get("aten.convolution_backward", 0)
    if bwd:
        total += 2 * counts.get("aten.convolution", 0) - bwd
    return int(total)


def count_step_macs(module: nn.Module, x: torch.Tensor, mode: str, per_call_mode: bool = True) -> int:
    """MACs per image of one measured step, by FlopCounterMode: the forward (infer) on one image, or forward +
    backward (train) on two (BatchNorm needs more than one value per channel), halved. With `per_call_mode` the
    module counts in eval (infer) or train mode, as the step runs; the flag is restored after."""
    n = 1 if mode == "infer" else 2
    xb = x[:n] if x.shape[0] >= n else x[:1].repeat(n, *([1] * (x.dim() - 1)))
    was_training = module.training
    try:
        if per_call_mode:
            module.train(mode == "train")
        with FlopCounterMode(display=False) as counter:
            if mode == "infer":
                with torch.no_grad():
                    module(xb)
            else:
                square_mean_loss(module(xb)).backward()
        for p in module.parameters():
            p.grad = None
        return counted_flops(counter) // 2 // n
    finally:
        module.train(was_training)


def params_m(module: nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6
