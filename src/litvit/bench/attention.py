"""One attention layer as benchmark subjects (`litvit bench --attention`): each design at each token grid.

All layers use the same dim and heads (default 768 / 12, head_dim 64) at every size, so that only the attention
design differs (the designs are in `attention_layers`). Each row is compared with HiLo and with its official-style
matmul baseline at the same size, round by round.
"""

from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from ..errors import BenchError
from .attention_layers import build_layer
from .config import LAYERS, BenchConfig
from .subject import Loss, Spec, Subject, count_step_macs, params_m, square_mean_loss
from .timing import ratio_per_round

LAYER_LABELS = {
    "hilo": "HiLo (litvit)",
    "hilo_matmul": "HiLo (matmul, official style)",
    "mhsa": "MHSA (timm ViT, SDPA)",
    "pvt_sra": "SRA (timm PVTv2)",
    "swin_window": "W-MSA 7x7 (timm Swin)",
}
COMPARED_WITH = ("hilo", "hilo_matmul")  # each row's `vs_<name>` ratios


def key(name: str, size: Tuple[int, int]) -> str:
    return f"{name}@{size[0]}x{size[1]}"


class LayerKind:
    """Subjects of `litvit bench --attention`: one per layer and token grid, sizes outermost."""

    record = "attention"
    cpu_batch = 4
    per_call_mode = False
    memory_per_input_byte = 5
    latency = False

    def validate(self, cfg: BenchConfig) -> BenchConfig:
        if not cfg.layers:
            raise BenchError(f"no attention layers given: choose among {', '.join(LAYERS)}")
        for name in cfg.layers:
            if name not in LAYERS:
                raise BenchError(f"unknown attention layer {name!r}: choose among {', '.join(LAYERS)}")
        if not cfg.sizes:
            raise BenchError("no token-grid sizes given: use e.g. --sizes 14 28 56")
        if cfg.dim < 1 or cfg.heads < 1 or cfg.dim % cfg.heads:
            raise BenchError(f"--dim ({cfg.dim}) must be a positive multiple of --heads ({cfg.heads})")
        if cfg.window < 1:
            raise BenchError(f"--window must be >= 1, got {cfg.window}")
        if not 0.0 <= cfg.alpha <= 1.0:
            raise BenchError(f"--alpha must be in [0, 1] (HiLo's Lo-Fi share of heads), got {cfg.alpha}")
        return cfg

    def specs(self, cfg: BenchConfig) -> List[Spec]:
        shared = {"dim": cfg.dim, "heads": cfg.heads, "window": cfg.window, "alpha": cfg.alpha}
        return [
            {"kind": "layer", "name": name, "size": [int(size[0]), int(size[1])], **shared}
            for size in cfg.sizes
            for name in cfg.layers
        ]

    def key(self, spec: Spec) -> str:
        return key(spec["name"], spec["size"])

    def build(self, spec: Spec) -> nn.Module:
        size = (int(spec["size"][0]), int(spec["size"][1]))
        return build_layer(spec["name"], spec["dim"], spec["heads"], size, spec["window"], spec["alpha"])

    def input_shape(self, spec: Spec, batch: int) -> Tuple[int, ...]:
        return (batch, int(spec["size"][0]), int(spec["size"][1]), int(spec["dim"]))

    def loss(self) -> Loss:
        return square_mean_loss

    def cannot_run(self, spec: Spec, error: str) -> str:
        h, w = spec["size"]
        return f"{spec['name']} does not run at {h}x{w} tokens ({error}); pick other --sizes or drop it"

    def describe(self, subject: Subject, cfg: BenchConfig, amp: Optional[torch.dtype]) -> Dict[str, Any]:
        name, size, layer = subject.spec["name"], subject.spec["size"], subject.module
        macs = count_step_macs(layer, subject.x, "infer", per_call_mode=False)
        step_macs = macs if cfg.mode == "infer" else count_step_macs(layer, subject.x, "train", per_call_mode=False)
        row: Dict[str, Any] = {
            "layer": name,
            "label": LAYER_LABELS[name],
            "size": list(size),
            "tokens": size[0] * size[1],
            "params_m": params_m(layer),
            "macs_per_image": macs,
            "gmacs_per_image": macs / 1e9,
            "macs_step_per_image": step_macs,
        }
        if name == "hilo":
            row["official_flops"] = int(layer.flops(*size))
        if name == "pvt_sra":
            row["sr_ratio"] = layer.sr_ratio
        return row

    def compare(self, rows: Dict[str, Dict[str, Any]], raw: Dict[str, Any], cfg: BenchConfig) -> None:
        """`vs_hilo`, `vs_hilo_matmul`: img/s ratios to those layers at the same size."""
        for k, row in rows.items():
            for other in COMPARED_WITH:
                other_key = key(other, row["size"])
                if other_key in raw and other_key != k:
                    row[f"vs_{other}"] = ratio_per_round(raw[k], raw[other_key], "throughput")
