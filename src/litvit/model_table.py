"""The model table of README.md, computed from the code (parameters, official and measured GMACs).

Its rows are `litvit.variants.VARIANTS`, each at its default resolution (its pretrained config's, unless the row
sets `img_size`): nothing here lists models.
"""

from typing import Dict, List, Optional

import timm
import torch

from .flops import count_macs
from .variants import VARIANTS

TABLE_MODELS = VARIANTS  # one row per variant: label, timm name and keywords, paper top-1 (None: no weights)


def _gmacs(macs: float) -> str:
    """GMACs with two decimals; two significant digits for the tiny models (no row reads 0.00)."""
    g = macs / 1e9
    return f"{g:.2f}" if g >= 0.1 else f"{g:.2g}"


def model_rows(measured: bool = False) -> List[Dict[str, object]]:
    rows = []
    for v in TABLE_MODELS:
        with torch.device("meta"):
            meta = timm.create_model(v.name, **v.kwargs)
        size = v.kwargs.get("img_size") or meta.pretrained_cfg["input_size"][-1]
        official = getattr(meta, "flops", None)  # LIT-Ti's code base has no official flops() formula
        row: Dict[str, object] = {
            "model": v.label,
            "timm name": v.title,
            "img": size,
            "params (M)": f"{sum(p.numel() for p in meta.parameters()) / 1e6:.2f}",
            "GMACs (official flops())": "-" if official is None else _gmacs(official(size)),
            "top-1 (paper)": "-" if v.top1 is None else f"{v.top1:.1f}",
        }
        if measured:
            row["GMACs (measured)"] = _gmacs(count_macs(timm.create_model(v.name, **v.kwargs), size))
        rows.append(row)
    return rows


def markdown_table(rows: Optional[List[Dict[str, object]]] = None, measured: bool = False) -> str:
    rows = rows if rows is not None else model_rows(measured)
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
