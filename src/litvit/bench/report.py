"""Outputs of `litvit bench`: a Markdown table, the JSON record and a PNG plot (matplotlib, Agg backend)."""

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional

from .core import BenchError


def _f(v: Optional[float], digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{digits}f}"


def _range(d: Optional[Dict[str, float]], digits: int = 1) -> str:
    if not d:
        return "-"
    return f"{d['min']:.{digits}f}–{d['max']:.{digits}f}"


def _ratio(d: Optional[Dict[str, Any]], digits: int = 2) -> str:
    if not d:
        return "-"
    return f"{d['median']:.{digits}f} ({d['min']:.{digits}f}–{d['max']:.{digits}f})"


def _table(cols: List[str], rows: List[List[str]]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def header(record: Dict[str, Any]) -> List[str]:
    m, c, mm = record["machine"], record["config"], record["matmul"]
    dev = m.get("gpu") or f"{m['cpu']} ({m['cores']} cores)"
    lines = [
        f"Machine: {dev}; {m['threads']} threads; torch {m['torch']}, timm {m['timm']}; {m['date']}",
        f"Command: `{m['command']}`",
        f"Run: {c['mode']} {c['dtype']}, batch {c['batch_size']}, device {c['device']}, compile {c['compile']}, "
        f"warm-up {c['warmup']}, {c['rounds']} rounds x {c['repeats']} repeats (interleaved); values are medians "
        "with min–max",
        f"Matmul peak (fp32 {mm['n']}x{mm['n']}, same run): {mm['gflops_median']:.1f} GFLOP/s median, "
        f"{mm['gflops_best']:.1f} best",
    ]
    base = record.get("memory", {}).get("baseline")
    if base and "peak_rss_bytes" in base:
        lines.append(
            f"Baseline peak RSS (fresh process importing torch + timm + litvit, building nothing): "
            f"{base['peak_rss_bytes'] / 1024**2:.0f} MB"
        )
    loads = [m.get("load_average_start"), m.get("load_average_end")]
    if all(loads):
        lines.append(f"1-min load average: {loads[0][0]:.2f} at the start, {loads[1][0]:.2f} at the end")
    if m.get("env"):
        lines.append("Environment: " + ", ".join(f"{k}={v}" for k, v in m["env"].items()))
    if m.get("busy_warning"):
        lines.append(f"**Warning: {m['busy_warning']}**")
    return lines


def models_markdown(record: Dict[str, Any]) -> str:
    c = record["config"]
    ref = c.get("reference")
    ref_label = next((r["label"] for r in record["results"] if r["model"] == ref), ref)
    cols = ["model", "params (M)", "GMACs", "img/s", "img/s min–max"]
    if ref:
        cols.append(f"img/s vs {ref_label}")
    latency = c.get("latency")
    if latency:
        cols += ["latency b1 (ms)", "latency min–max"]
        if ref:
            cols.append(f"latency vs {ref_label}")
    cols.append("% matmul peak")
    memory = c.get("memory")
    if memory:
        cols += ["peak RSS (MB)", "over baseline (MB)", "running peak (MB)", "step MB/img"]
        if ref:
            cols.append(f"peak RSS vs {ref_label}")
        if any("cuda_peak_mb" in r.get("memory", {}) for r in record["results"]):
            cols += ["GPU peak (MB)", "GPU step MB/img"]
    if c["dtype"] != "fp32":
        cols.append(f"{c['dtype']} logit rel. diff")
    if c.get("compile"):
        cols.append("first call (s)")
    rows = []
    for r in record["results"]:
        name = f"**{r['label']}**" if r["ours"] else r["label"]
        row = [name, _f(r["params_m"], 2), _f(r["gmacs"], 2)]
        row += [_f(r["throughput"]["img_s"]["median"]), _range(r["throughput"]["img_s"])]
        vs = r.get("vs_reference", {})
        if ref:
            row.append(_ratio(vs.get("throughput")))
        if latency:
            row += [_f(r["latency"]["ms"]["median"]), _range(r["latency"]["ms"])]
            if ref:
                row.append(_ratio(vs.get("latency")))
        row.append(_f(100 * r["peak_fraction"], 1) + "%")
        if memory:
            mem = r.get("memory", {})
            row += [_f(mem.get("peak_rss_mb"), 0), _f(mem.get("over_baseline_mb"), 0)]
            row += [_f(mem.get("running_peak_mb"), 0), _f(mem.get("step_rss_per_image_mb"), 1)]
            if ref:
                row.append(_f(vs.get("peak_rss"), 2))
            if "GPU peak (MB)" in cols:
                row += [_f(mem.get("cuda_peak_mb"), 0), _f(mem.get("cuda_step_per_image_mb"), 1)]
        if c["dtype"] != "fp32":
            d = r.get("logit_rel_diff")
            row.append("-" if d is None else f"{d:.1e} {'ok' if r.get('logits_ok') else 'OVER 1e-2'}")
        if c.get("compile"):
            row.append(_f(r["warmup_s"][0], 1) if r.get("warmup_s") else "-")
        rows.append(row)
    lines = ["# litvit bench: models", ""] + [f"- {h}" for h in header(record)] + ["", _table(cols, rows), ""]
    note = (
        "Bold: litvit models. img/s: batch / median step time (min–max over all timed steps). Ratios vs the "
        "reference are medians of per-round ratios (min–max over rounds). % matmul peak: img/s x 2 x MACs per "
        "image of the step / measured matmul FLOP/s."
    )
    if memory:
        note += (
            " Peak RSS: the fresh process's peak (imports included); running peak: its peak while the steps ran; "
            "step MB/img: running peak above the built model, per image."
        )
    lines += [note, ""]
    return "\n".join(lines)


def attention_markdown(record: Dict[str, Any]) -> str:
    c = record["config"]
    cols = ["layer", "tokens", "GMACs/img", "params (M)", "img/s", "img/s min–max", "ms/batch"]
    cols += ["vs matmul HiLo", "vs HiLo", "% matmul peak"]
    if c.get("memory"):
        cols += ["peak RSS (MB)", "over baseline (MB)", "running peak (MB)", "step MB/img"]
        if any("cuda_peak_mb" in r.get("memory", {}) for r in record["results"]):
            cols += ["GPU peak (MB)", "GPU step MB/img"]
    rows = []
    for r in sorted(record["results"], key=lambda r: (r["tokens"], r["size"], r["layer"])):
        name = r["label"] + (f", sr {r['sr_ratio']}" if "sr_ratio" in r else "")
        name = f"**{name}**" if r["layer"] == "hilo" else name
        row = [name, f"{r['size'][0]}x{r['size'][1]}", _f(r["gmacs_per_image"], 3), _f(r["params_m"], 2)]
        row += [_f(r["throughput"]["img_s"]["median"]), _range(r["throughput"]["img_s"])]
        row.append(_f(r["throughput"]["summary_s"]["median"] * 1e3, 1))
        row += [_ratio(r.get("vs_hilo_matmul")), _ratio(r.get("vs_hilo"))]
        row.append(_f(100 * r["peak_fraction"], 1) + "%")
        if c.get("memory"):
            mem = r.get("memory", {})
            row += [_f(mem.get("peak_rss_mb"), 0), _f(mem.get("over_baseline_mb"), 0)]
            row += [_f(mem.get("running_peak_mb"), 0), _f(mem.get("step_rss_per_image_mb"), 1)]
            if "GPU peak (MB)" in cols:
                row += [_f(mem.get("cuda_peak_mb"), 0), _f(mem.get("cuda_step_per_image_mb"), 1)]
        rows.append(row)
    lines = ["# litvit bench --attention", ""] + [f"- {h}" for h in header(record)]
    lines.append(
        f"- Layer: dim {c['dim']}, {c['heads']} heads; HiLo window {c['window']}, alpha {c['alpha']}; "
        f"batch {c['batch_size']} maps of H x W tokens"
    )
    lines += ["", _table(cols, rows), ""]
    lines += [
        "vs matmul HiLo / vs HiLo: img/s ratio to those layers at the same size (median of per-round ratios, "
        "min–max over rounds; > 1 is faster). GMACs/img: FlopCounterMode count of one forward on one map.",
        "",
    ]
    return "\n".join(lines)


def plot_models(record: Dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c, m = record["config"], record["machine"]
    fig, ax = plt.subplots(figsize=(7.5, 5.0), dpi=120)
    results = record["results"]
    xmax = 1.15 * max(r["gmacs"] for r in results)
    ymax = 1.15 * max(r["throughput"]["img_s"]["max"] for r in results)
    for ours, color, marker, tag in ((True, "tab:red", "o", "litvit"), (False, "tab:blue", "s", "peers")):
        pts = [r for r in results if r["ours"] == ours]
        if not pts:
            continue
        xs = [r["gmacs"] for r in pts]
        ys = [r["throughput"]["img_s"]["median"] for r in pts]
        lo = [y - r["throughput"]["img_s"]["min"] for y, r in zip(ys, pts)]
        hi = [r["throughput"]["img_s"]["max"] - y for y, r in zip(ys, pts)]
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt=marker, color=color, label=tag, capsize=3, markersize=7)
    ax.set_xlim(0, xmax)
    ax.set_ylim(0, ymax)
    # Labels in axes-fraction coordinates, pushed down until they clear the labels already placed.
    placed: List[tuple] = []
    for r in sorted(results, key=lambda r: -r["throughput"]["img_s"]["median"]):
        x, y = r["gmacs"], r["throughput"]["img_s"]["median"]
        fx, fy = x / xmax + 0.012, y / ymax + 0.012
        while any(abs(fx - px) < 0.16 and abs(fy - py) < 0.035 for px, py in placed):
            fy -= 0.035
        placed.append((fx, fy))
        moved = abs(fy - (y / ymax + 0.012)) > 1e-9
        ax.annotate(
            r["label"],
            (x, y),
            xytext=(fx, fy),
            textcoords="axes fraction",
            fontsize=8,
            arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.5} if moved else None,
        )
    ax.set_xlabel("GMACs per image")
    ax.set_ylabel("throughput (img/s, median; bars min–max)")
    dev = m.get("gpu") or f"{m['cpu']}, {m['threads']} threads"
    ax.set_title(f"{c['mode']} {c['dtype']} batch {c['batch_size']} @ {c['img_size']} — {dev}", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_attention(record: Dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c, m = record["config"], record["machine"]
    sizes = [tuple(s) for s in c["sizes"]]
    layers = list(c["layers"])
    by_key = {(r["layer"], tuple(r["size"])): r for r in record["results"]}
    fig, ax = plt.subplots(figsize=(8.0, 4.8), dpi=120)
    width = 0.8 / max(1, len(layers))
    for j, name in enumerate(layers):
        xs, ys, lo, hi = [], [], [], []
        for i, s in enumerate(sizes):
            r = by_key.get((name, s))
            if r is None:
                continue
            ips = r["throughput"]["img_s"]
            xs.append(i + (j - (len(layers) - 1) / 2) * width)
            ys.append(ips["median"])
            lo.append(ips["median"] - ips["min"])
            hi.append(ips["max"] - ips["median"])
        label = next((r["label"] for (n, _), r in by_key.items() if n == name), name)
        ax.bar(xs, ys, width=width, yerr=[lo, hi], capsize=2, label=label)
    ax.set_xticks(range(len(sizes)))
    ax.set_xticklabels([f"{h}x{w} tokens" for h, w in sizes])
    ax.set_yscale("log")
    ax.set_ylabel("img/s (median, log scale; bars min–max)")
    dev = m.get("gpu") or f"{m['cpu']}, {m['threads']} threads"
    ax.set_title(
        f"attention layer dim {c['dim']}, {c['heads']} heads — {c['mode']} {c['dtype']} batch {c['batch_size']} — "
        f"{dev}",
        fontsize=9,
    )
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_outputs(record: Dict[str, Any], out_dir: Path, plot: bool = True) -> Dict[str, Path]:
    """Write table.md, results.json and plot.png into `out_dir` (created); return their paths."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BenchError(f"cannot create output folder {str(out_dir)!r} ({e.strerror}): pick another --out") from None
    attention = record["kind"] == "attention"
    paths = {"table": out_dir / "table.md", "json": out_dir / "results.json", "plot": out_dir / "plot.png"}
    paths["table"].write_text(attention_markdown(record) if attention else models_markdown(record))
    paths["json"].write_text(json.dumps(record, indent=1, default=str) + "\n")
    if plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise BenchError("the plot needs matplotlib: pip install 'litvit[bench]' (or matplotlib)") from None
        (plot_attention if attention else plot_models)(record, paths["plot"])
    else:
        del paths["plot"]
    return paths
