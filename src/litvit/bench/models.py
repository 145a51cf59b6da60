"""Whole models as benchmark subjects (`litvit bench`): any timm models, litvit's and their peers.

A subject is one model at `img_size`: the throughput step at the batch, plus batch-1 latency; its table row has the
papers' label, parameters, forward GMACs and, under autocast, how far its logits move from fp32. Ratios compare
every model with a reference (Swin-T when listed), round by round.
"""

from dataclasses import replace
from difflib import get_close_matches
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from ..errors import BenchError
from ..runtime import autocast
from ..variants import get_variant
from .config import DEFAULT_REFERENCE, BenchConfig, split_model, split_runtime
from .official_style import (
    OFFICIAL_PARTS,
    OFFICIAL_SUFFIX,
    is_official_style,
    official_base,
    official_parts,
    official_style,
)
from .subject import Loss, Spec, Subject, count_step_macs, cross_entropy_loss, params_m
from .timing import ratio_per_round

PEER_LABELS = {
    "resnet18": "ResNet-18",
    "resnet50": "ResNet-50",
    "pvt_v2_b2": "PVTv2-B2",
    "twins_pcpvt_small": "Twins-PCPVT-S",
    "swin_tiny_patch4_window7_224": "Swin-T",
    "convnext_tiny": "ConvNeXt-T",
}

# vs_reference's memory ratios: (ratio, memory row field)
MEMORY_RATIOS = (("peak_rss", "peak_rss_mb"), ("running_peak_rss", "running_peak_mb"), ("cuda_peak", "cuda_peak_mb"))
LOGIT_TOL = 1e-2  # max relative logit difference of an autocast forward vs fp32 that counts as "ok"


def label(name: str) -> str:
    """The papers' name: litvit's from litvit.variants, the peers' from PEER_LABELS, else the timm name."""
    if is_official_style(name):
        parts = official_parts(name)
        how = "official code" if parts == OFFICIAL_PARTS else f"official {', '.join(parts)}"
        return f"{label(official_base(name))} ({how})"
    try:
        return get_variant(name).label
    except KeyError:
        return PEER_LABELS.get(name, name)


def is_ours(name: str) -> bool:
    """A litvit model (bold in the tables); its official-code stand-in (`NAME:official`) is not."""
    from timm.models import model_entrypoint

    return not is_official_style(name) and model_entrypoint(name).__module__.startswith("litvit.")


def check_models(names: List[str]) -> None:
    import timm

    import litvit.models  # noqa: F401  (registers litvit's models with timm)

    if not names:
        raise BenchError("no models given: name at least one timm model, e.g. litv2_s resnet50")
    for entry in names:
        name = official_base(entry)
        if name != entry and not name.startswith("litv2_"):
            raise BenchError(
                f"{entry!r}: the official-code rows (NAME{OFFICIAL_SUFFIX}) exist for LITv2 classifiers only, "
                "e.g. litv2_s:official"
            )
        try:
            official_parts(entry)
        except ValueError as e:
            raise BenchError(str(e)) from None
        if not timm.is_model(name):
            close = get_close_matches(name, timm.list_models(), n=3)
            hint = f"did you mean {', '.join(close)}?" if close else "see timm.list_models('*pattern*')"
            raise BenchError(f"unknown model {name!r}: not a timm or litvit model name; {hint}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BenchError(f"model {dupes[0]!r} is listed twice: name each model once")


def create_model(name: str, img_size: int) -> nn.Module:
    """timm.create_model at `img_size`: models with a size-dependent layout get img_size=..., others take any size."""
    import timm

    import litvit.models  # noqa: F401

    if is_official_style(name):
        return official_style(create_model(official_base(name), img_size), official_parts(name))
    cfg = timm.get_pretrained_cfg(name)
    native = cfg.input_size[-1] if cfg is not None and cfg.input_size else 224
    if img_size != native:
        try:
            return timm.create_model(name, pretrained=False, img_size=img_size)
        except TypeError:  # the constructor has no img_size (CNNs, PVTv2): any input size works as is
            pass
    return timm.create_model(name, pretrained=False)


def logit_rel_diff(model: nn.Module, x: torch.Tensor, amp: Optional[torch.dtype]) -> Optional[float]:
    """max |autocast logits - fp32 logits| / max |fp32 logits| in eval mode, or None for fp32."""
    if amp is None:
        return None
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            ref = model(x).float()
            with autocast(x.device, amp):
                low = model(x).float()
    finally:
        model.train(was_training)
    scale = ref.abs().max().item()
    return float((low - ref).abs().max().item() / scale) if scale > 0 else float("inf")


def row_runtime(subject: Subject) -> str:
    return subject.spec.get("runtime", "eager")


def _official_row(rows: Dict[str, Dict[str, Any]], row: Dict[str, Any]) -> Optional[str]:
    """The key of `row`'s official-code row (`NAME:official`, same runtime) in this run, if there is one."""
    for key, other in rows.items():
        if other["model"] == row["model"] + OFFICIAL_SUFFIX and other["runtime"] == row["runtime"]:
            return key
    return None


class ModelKind:
    """Subjects of `litvit bench`: one per model name."""

    record = "models"
    cpu_batch = 16
    per_call_mode = True
    memory_per_input_byte = 30
    latency = True

    def validate(self, cfg: BenchConfig) -> BenchConfig:
        names = [split_model(m)[0] for m in cfg.models]
        check_models(names)
        if cfg.compile:  # the older spelling of --runtime compile
            if cfg.runtimes != ["eager"]:
                raise BenchError("--compile is --runtime compile: list compile among the --runtime values instead")
            cfg = replace(cfg, runtimes=["compile"])
        if cfg.img_size < 1:
            raise BenchError(f"--img-size must be >= 1, got {cfg.img_size}")
        if cfg.reference is not None and cfg.reference not in names:
            raise BenchError(f"--reference {cfg.reference!r} is not among the benchmarked models: add it to the list")
        default = DEFAULT_REFERENCE if DEFAULT_REFERENCE in names else None
        return replace(cfg, reference=cfg.reference or default)

    def specs(self, cfg: BenchConfig) -> List[Spec]:
        """One subject per model and runtime (`MODEL@RUNTIME,...`: those runtimes only); a runtime's own precision
        (`compile+bf16`) wins over --dtype."""
        specs = []
        for entry in cfg.models:
            name, own = split_model(entry)
            for rt in own or cfg.runtimes:
                base, precision = split_runtime(rt)
                spec = {"kind": "model", "name": name, "img_size": cfg.img_size, "runtime": base}
                specs.append({**spec, "dtype": precision or cfg.dtype, "runtime_label": rt})
        return specs

    def key(self, spec: Spec) -> str:
        """'litv2_s' in the eager runtime at the run's precision, else 'litv2_s[int8+bf16]'."""
        rt = spec.get("runtime_label", "eager")
        return spec["name"] if rt == "eager" else f"{spec['name']}[{rt}]"

    def build(self, spec: Spec) -> nn.Module:
        torch.manual_seed(0)
        return create_model(spec["name"], int(spec["img_size"]))

    def input_shape(self, spec: Spec, batch: int) -> Tuple[int, ...]:
        return (batch, 3, int(spec["img_size"]), int(spec["img_size"]))

    def loss(self) -> Loss:
        return cross_entropy_loss()

    def cannot_run(self, spec: Spec, error: str) -> str:
        size = spec["img_size"]
        return f"{spec['name']} does not run at {size}x{size} ({error}); pick another --img-size or drop it"

    def describe(self, subject: Subject, cfg: BenchConfig, amp: Optional[torch.dtype]) -> Dict[str, Any]:
        model, x = subject.module, subject.x
        macs = count_step_macs(model, x, "infer")
        row: Dict[str, Any] = {
            "model": subject.spec["name"],
            "runtime": subject.spec.get("runtime_label", "eager"),
            "label": label(subject.spec["name"]),
            "ours": is_ours(subject.spec["name"]),
            "params_m": params_m(model),
            "macs": macs,
            "gmacs": macs / 1e9,
            "macs_step_per_image": macs if cfg.mode == "infer" else count_step_macs(model, x, "train"),
            # eager under autocast vs fp32; other runtimes report their own difference (runtimes.build_runtime)
            "logit_rel_diff": logit_rel_diff(model, x[:4], amp) if row_runtime(subject) == "eager" else None,
        }
        if row["logit_rel_diff"] is not None:
            row["logits_ok"] = row["logit_rel_diff"] <= LOGIT_TOL
        return row

    def compare(self, rows: Dict[str, Dict[str, Any]], raw: Dict[str, Any], cfg: BenchConfig) -> None:
        """`vs_reference`: throughput and latency ratios per round, and the memory ratios, against the reference
        model in the eager runtime (else its first runtime listed); `vs_eager`: each other runtime's throughput and
        latency against the same model in eager; `vs_official`: a LITv2's against its `:official` row."""
        for name, row in rows.items():
            official = _official_row(rows, row)
            if official is not None:  # the same model as the official code runs it, in the same runtime
                ratios = {"throughput": ratio_per_round(raw[name], raw[official], "throughput")}
                if cfg.latency:
                    ratios["latency"] = ratio_per_round(raw[f"{name}@latency"], raw[f"{official}@latency"], "latency")
                row["vs_official"] = ratios
            eager = row["model"]
            if row["runtime"] != "eager" and eager in rows:
                ratios = {"throughput": ratio_per_round(raw[name], raw[eager], "throughput")}
                if cfg.latency:
                    ratios["latency"] = ratio_per_round(raw[f"{name}@latency"], raw[f"{eager}@latency"], "latency")
                row["vs_eager"] = ratios
        if cfg.reference is None:
            return
        ref_runtimes = [r["runtime"] for r in rows.values() if r["model"] == cfg.reference]
        first = "eager" if "eager" in ref_runtimes else ref_runtimes[0]
        ref_name = cfg.reference if first == "eager" else f"{cfg.reference}[{first}]"
        ref = rows[ref_name]
        for name, row in rows.items():
            throughput = ratio_per_round(raw[name], raw[ref_name], "throughput")
            throughput["of_medians"] = row["throughput"]["img_s"]["median"] / ref["throughput"]["img_s"]["median"]
            ratios: Dict[str, Any] = {"throughput": throughput}
            if cfg.latency:
                ratios["latency"] = ratio_per_round(raw[f"{name}@latency"], raw[f"{ref_name}@latency"], "latency")
            mem, ref_mem = row.get("memory", {}), ref.get("memory", {})
            for ratio, field in MEMORY_RATIOS:
                if mem.get(field) and ref_mem.get(field):
                    ratios[ratio] = mem[field] / ref_mem[field]
            row["vs_reference"] = ratios
