"""The model table of README.md, computed from the code (parameters, official and measured GMACs)."""

from typing import Dict, List, Optional

import timm
import torch

from .flops import count_macs, official_flops

# (timm name, creation keywords, label, ImageNet-1K top-1 reported by the official READMEs)
TABLE_MODELS = [
    ("litv2_s", {}, "LITv2-S", 82.0),
    ("litv2_m", {}, "LITv2-M", 83.3),
    ("litv2_b", {}, "LITv2-B", 83.6),
    ("litv2_b", {"img_size": 384}, "LITv2-B 384", 84.7),
    ("lit_ti", {}, "LIT-Ti", 81.1),
    ("lit_s", {}, "LIT-S", 81.5),
    ("lit_m", {}, "LIT-M", 83.0),
    ("lit_b", {}, "LIT-B", 83.4),
]


def model_rows(measured: bool = False) -> List[Dict[str, object]]:
    rows = []
    for name, kwargs, label, top1 in TABLE_MODELS:
        with torch.device("meta"):
            meta = timm.create_model(name, **kwargs)
        size = kwargs.get("img_size", 224)
        row: Dict[str, object] = {
            "model": label,
            "timm name": name + ("" if not kwargs else f" (img_size={size})"),
            "img": size,
            "params (M)": f"{sum(p.numel() for p in meta.parameters()) / 1e6:.2f}",
            "GMACs (official flops())": "-" if name == "lit_ti" else f"{official_flops(meta) / 1e9:.2f}",
            "top-1 (paper)": f"{top1:.1f}",
        }
        if measured:
            row["GMACs (measured)"] = f"{count_macs(timm.create_model(name, **kwargs), size) / 1e9:.2f}"
        rows.append(row)
    return rows


def markdown_table(rows: Optional[List[Dict[str, object]]] = None, measured: bool = False) -> str:
    rows = rows if rows is not None else model_rows(measured)
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
