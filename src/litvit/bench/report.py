"""Outputs of `litvit bench`, for models and attention layers: a Markdown table, the JSON record and a PNG plot.

A table is a list of columns (header, cell of a result row); the two benchmarks share the header lines and the
throughput, matmul-peak and memory columns, and differ in their naming, ratio and extra columns. The plot is
throughput against GMACs (models, as the paper's figure) or img/s per token grid (attention layers).
"""

import json
import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..checkpoint import write_result
from ..errors import BenchError
from .machine import STEAL_WARNING

Row = Dict[str, Any]
Column = Tuple[str, Callable[[Row], str]]


def _f(v: Optional[float], digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{digits}f}"


def _range(d: Optional[Dict[str, float]], digits: int = 1) -> str:
    return f"{d['min']:.{digits}f}–{d['max']:.{digits}f}" if d else "-"


def _ratio(d: Optional[Dict[str, Any]], digits: int = 2) -> str:
    return f"{d['median']:.{digits}f} ({d['min']:.{digits}f}–{d['max']:.{digits}f})" if d else "-"


def _mem(field: str, digits: int) -> Callable[[Row], str]:
    return lambda r: _f(r.get("memory", {}).get(field), digits)


def _table(cols: List[Column], rows: List[Row]) -> str:
    lines = ["| " + " | ".join(h for h, _ in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(r) for _, cell in cols) + " |" for r in rows]
    return "\n".join(lines)


def _runtimes(c: Dict[str, Any]) -> str:
    return f"runtimes {' '.join(c['runtimes'])}" if "runtimes" in c else f"compile {c['compile']}"


def steal_lines(machine: Dict[str, Any]) -> List[str]:
    """The shares of CPU time other processes used and the hypervisor stole during the run, with a warning above
    STEAL_WARNING."""
    lines = []
    if machine.get("others_share") is not None:
        lines.append(f"CPU time used by other processes during the run: {machine['others_share']:.1%}")
    share = machine.get("steal_share")
    if share is None:
        return lines
    lines.append(f"CPU time stolen by the hypervisor during the run (other virtual machines): {share:.1%}")
    if share > STEAL_WARNING:
        lines.append(
            f"**Warning: the hypervisor took {share:.0%} of this machine's CPU time during the run: absolute timings "
            "are slow and noisy; compare the per-round ratios, or rerun when it is quiet**"
        )
    return lines


def header(record: Dict[str, Any]) -> List[str]:
    m, c, mm = record["machine"], record["config"], record["matmul"]
    dev = m.get("gpu") or f"{m['cpu']} ({m['cores']} cores)"
    lines = [
        f"Machine: {dev}; {m['threads']} threads; torch {m['torch']}, timm {m['timm']}; {m['date']}",
        f"Command: `{m['command']}`",
        f"Run: {c['mode']} {c['dtype']}, batch {c['batch_size']}, device {c['device']}, {_runtimes(c)}, "
        f"warm-up {c['warmup']}, {c['rounds']} rounds x {c['repeats']} repeats (interleaved); values are medians "
        "with min–max",
        f"Matmul peak (fp32 {mm['n']}x{mm['n']}, same run): {mm['gflops_median']:.1f} GFLOP/s median, "
        f"{mm['gflops_best']:.1f} best",
    ]
    if mm.get("bf16"):
        b = mm["bf16"]
        lines.append(
            f"Matmul bf16 (same size, same run): {b['gflops_median']:.1f} GFLOP/s median, "
            f"{b['gflops_median'] / mm['gflops_median']:.2f}x the fp32 probe"
        )
    base = record.get("memory", {}).get("baseline")
    if base and "peak_rss_bytes" in base:
        lines.append(
            f"Baseline peak RSS (fresh process importing torch + timm + litvit, building nothing): "
            f"{base['peak_rss_bytes'] / 1024**2:.0f} MB"
        )
    loads = [m.get("load_average_start"), m.get("load_average_end")]
    if all(loads):
        lines.append(f"1-min load average: {loads[0][0]:.2f} at the start, {loads[1][0]:.2f} at the end")
    lines += steal_lines(m)
    if m.get("allocator"):
        lines.append(f"Allocator: {m['allocator']}")
    if m.get("env"):
        lines.append("Environment: " + ", ".join(f"{k}={v}" for k, v in m["env"].items()))
    for key in ("busy_warning", "bf16_gemm_warning"):
        if m.get(key):
            lines.append(f"**Warning: {m[key]}**")
    return lines


THROUGHPUT: List[Column] = [
    ("img/s", lambda r: _f(r["throughput"]["img_s"]["median"])),
    ("img/s min–max", lambda r: _range(r["throughput"]["img_s"])),
]
PEAK: Column = ("% matmul peak", lambda r: _f(100 * r["peak_fraction"], 1) + "%")


def memory_columns(record: Dict[str, Any], ratio: Optional[Column] = None) -> List[Column]:
    """Peak RSS, over baseline, running peak, step MB/img, then `ratio`, then the GPU columns where measured."""
    if not record["config"].get("memory"):
        return []
    cols = [("peak RSS (MB)", _mem("peak_rss_mb", 0)), ("over baseline (MB)", _mem("over_baseline_mb", 0))]
    cols += [("running peak (MB)", _mem("running_peak_mb", 0)), ("step MB/img", _mem("step_rss_per_image_mb", 1))]
    cols += [ratio] if ratio else []
    if any("cuda_peak_mb" in r.get("memory", {}) for r in record["results"]):
        cols += [("GPU peak (MB)", _mem("cuda_peak_mb", 0)), ("GPU step MB/img", _mem("cuda_step_per_image_mb", 1))]
    return cols


def _logits(r: Row) -> str:
    d = r.get("logit_rel_diff")
    return "-" if d is None else f"{d:.1e} {'ok' if r.get('logits_ok') else 'OVER 1e-2'}"


def models_markdown(record: Dict[str, Any]) -> str:
    c = record["config"]
    ref = c.get("reference")
    ref_label = next((r["label"] for r in record["results"] if r["model"] == ref), ref)

    def vs(name: str, fmt: Callable[[Any], str]) -> Callable[[Row], str]:
        return lambda r: fmt(r.get("vs_reference", {}).get(name))

    def vs_eager(name: str) -> Callable[[Row], str]:
        return lambda r: _ratio(r.get("vs_eager", {}).get(name))

    def vs_official(name: str) -> Callable[[Row], str]:
        return lambda r: _ratio(r.get("vs_official", {}).get(name))

    runtimes = list(dict.fromkeys(r.get("runtime", "eager") for r in record["results"]))
    cols: List[Column] = [("model", lambda r: f"**{r['label']}**" if r["ours"] else r["label"])]
    cols += [("runtime", lambda r: r.get("runtime", "eager"))] if runtimes != ["eager"] else []
    cols += [("params (M)", lambda r: _f(r["params_m"], 2)), ("GMACs", lambda r: _f(r["gmacs"], 2)), *THROUGHPUT]
    cols += [(f"img/s vs {ref_label}", vs("throughput", _ratio))] if ref else []
    cols += [("img/s vs eager", vs_eager("throughput"))] if "eager" in runtimes and len(runtimes) > 1 else []
    official = any("vs_official" in r for r in record["results"])
    cols += [("img/s vs official code", vs_official("throughput"))] if official else []
    if c.get("latency"):
        cols += [("latency b1 (ms)", lambda r: _f(r["latency"]["ms"]["median"]))]
        cols += [("latency min–max", lambda r: _range(r["latency"]["ms"]))]
        cols += [(f"latency vs {ref_label}", vs("latency", _ratio))] if ref else []
        cols += [("latency vs eager", vs_eager("latency"))] if "eager" in runtimes and len(runtimes) > 1 else []
        cols += [("latency vs official code", vs_official("latency"))] if official else []
    cols.append(PEAK)
    cols += memory_columns(record, (f"peak RSS vs {ref_label}", vs("peak_rss", lambda v: _f(v, 2))) if ref else None)
    if any(r.get("logit_rel_diff") is not None for r in record["results"]):
        cols += [(f"{'fp16' if c['dtype'] == 'fp16' else 'bf16'} logit rel. diff", _logits)]
    if runtimes != ["eager"]:
        cols += [("max abs Δlogit vs eager fp32", lambda r: _f(r.get("max_abs_logit_diff"), 4))]
        cols += [("build + first call (s)", lambda r: _f(r.get("prepare_s"), 1))]
    elif c.get("compile"):
        cols.append(("first call (s)", lambda r: _f(r["warmup_s"][0], 1) if r.get("warmup_s") else "-"))
    note = (
        "Bold: litvit models. img/s: batch / median step time (min–max over all timed steps). Ratios vs the "
        "reference are medians of per-round ratios (min–max over rounds). % matmul peak: img/s x 2 x MACs per "
        "image of the step / measured matmul FLOP/s."
    )
    if runtimes != ["eager"]:
        note += (
            " Runtimes (litvit.bench.runtimes): vs eager is the same model in PyTorch eager at the run's precision; "
            "max abs Δlogit: the runtime's logits against eager fp32 on the benchmark's input; build + first call: "
            "export / quantise / compile and one call, untimed."
        )
    if c.get("memory"):
        note += (
            " Peak RSS: the fresh process's peak (imports included); running peak: its peak while the steps ran; "
            "step MB/img: running peak above the built model, per image."
        )
    return _markdown("# litvit bench: models", header(record), _table(cols, record["results"]), note)


def attention_markdown(record: Dict[str, Any]) -> str:
    c = record["config"]

    def name(r: Row) -> str:
        text = r["label"] + (f", sr {r['sr_ratio']}" if "sr_ratio" in r else "")
        return f"**{text}**" if r["layer"] == "hilo" else text

    cols: List[Column] = [("layer", name), ("tokens", lambda r: f"{r['size'][0]}x{r['size'][1]}")]
    cols += [("GMACs/img", lambda r: _f(r["gmacs_per_image"], 3)), ("params (M)", lambda r: _f(r["params_m"], 2))]
    cols += [*THROUGHPUT, ("ms/batch", lambda r: _f(r["throughput"]["summary_s"]["median"] * 1e3, 1))]
    cols += [
        ("vs matmul HiLo", lambda r: _ratio(r.get("vs_hilo_matmul"))),
        ("vs HiLo", lambda r: _ratio(r.get("vs_hilo"))),
    ]
    cols += [PEAK, *memory_columns(record)]
    rows = sorted(record["results"], key=lambda r: (r["tokens"], r["size"], r["layer"]))
    layer = (
        f"Layer: dim {c['dim']}, {c['heads']} heads; HiLo window {c['window']}, alpha {c['alpha']}; "
        f"batch {c['batch_size']} maps of H x W tokens"
    )
    note = (
        "vs matmul HiLo / vs HiLo: img/s ratio to those layers at the same size (median of per-round ratios, "
        "min–max over rounds; > 1 is faster). GMACs/img: FlopCounterMode count of one forward on one map."
    )
    return _markdown("# litvit bench --attention", [*header(record), layer], _table(cols, rows), note)


def _markdown(title: str, header_lines: List[str], table: str, note: str) -> str:
    return "\n".join([title, "", *(f"- {h}" for h in header_lines), "", table, "", note, ""])


def _device(record: Dict[str, Any]) -> str:
    m = record["machine"]
    return m.get("gpu") or f"{m['cpu']}, {m['threads']} threads"


def plot_models(record: Dict[str, Any], ax: Any) -> None:
    """Throughput against GMACs, litvit's models and the peers in two colours, labels kept from overlapping."""
    c, results = record["config"], record["results"]
    xmax = 1.15 * max(r["gmacs"] for r in results)
    ymax = 1.15 * max(r["throughput"]["img_s"]["max"] for r in results)
    for ours, color, marker, tag in ((True, "tab:red", "o", "litvit"), (False, "tab:blue", "s", "peers")):
        pts = [r for r in results if r["ours"] == ours]
        if pts:
            ips = [r["throughput"]["img_s"] for r in pts]
            ys = [d["median"] for d in ips]
            err = [[d["median"] - d["min"] for d in ips], [d["max"] - d["median"] for d in ips]]
            xs = [r["gmacs"] for r in pts]
            ax.errorbar(xs, ys, yerr=err, fmt=marker, color=color, label=tag, capsize=3, markersize=7)
    ax.set_xlim(0, xmax)
    ax.set_ylim(0, ymax)
    # Labels in axes-fraction coordinates, pushed down until they clear the labels already placed.
    placed: List[Tuple[float, float]] = []
    for r in sorted(results, key=lambda r: -r["throughput"]["img_s"]["median"]):
        x, y = r["gmacs"], r["throughput"]["img_s"]["median"]
        fx, fy = x / xmax + 0.012, y / ymax + 0.012
        while any(abs(fx - px) < 0.16 and abs(fy - py) < 0.035 for px, py in placed):
            fy -= 0.035
        placed.append((fx, fy))
        moved = abs(fy - (y / ymax + 0.012)) > 1e-9
        arrow = {"arrowstyle": "-", "color": "0.5", "lw": 0.5} if moved else None
        ax.annotate(r["label"], (x, y), xytext=(fx, fy), textcoords="axes fraction", fontsize=8, arrowprops=arrow)
    ax.set_xlabel("GMACs per image")
    ax.set_ylabel("throughput (img/s, median; bars min–max)")
    title = f"{c['mode']} {c['dtype']} batch {c['batch_size']} @ {c['img_size']} — {_device(record)}"
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend()


def plot_attention(record: Dict[str, Any], ax: Any) -> None:
    """img/s per token grid (log scale), one bar per layer."""
    c = record["config"]
    sizes, layers = [tuple(s) for s in c["sizes"]], list(c["layers"])
    by_key = {(r["layer"], tuple(r["size"])): r for r in record["results"]}
    width = 0.8 / max(1, len(layers))
    for j, name in enumerate(layers):
        found = [(i, by_key[(name, s)]["throughput"]["img_s"]) for i, s in enumerate(sizes) if (name, s) in by_key]
        xs = [i + (j - (len(layers) - 1) / 2) * width for i, _ in found]
        ys = [d["median"] for _, d in found]
        err = [[d["median"] - d["min"] for _, d in found], [d["max"] - d["median"] for _, d in found]]
        label = next((r["label"] for (n, _), r in by_key.items() if n == name), name)
        ax.bar(xs, ys, width=width, yerr=err, capsize=2, label=label)
    ax.set_xticks(range(len(sizes)))
    ax.set_xticklabels([f"{h}x{w} tokens" for h, w in sizes])
    ax.set_yscale("log")
    ax.set_ylabel("img/s (median, log scale; bars min–max)")
    run = f"{c['mode']} {c['dtype']} batch {c['batch_size']}"
    ax.set_title(f"attention layer dim {c['dim']}, {c['heads']} heads — {run} — {_device(record)}", fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)


# record kind -> (table, plot, figure size)
OUTPUTS = {
    "models": (models_markdown, plot_models, (7.5, 5.0)),
    "attention": (attention_markdown, plot_attention, (8.0, 4.8)),
}


ABOVE = "; the results are above: pick another --out"  # a failed write: they were printed first


def write_outputs(record: Dict[str, Any], out_dir: Path, plot: bool = True) -> Dict[str, Path]:
    """Write table.md, results.json and plot.png into `out_dir` (created); return their paths."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BenchError(f"cannot create output folder {str(out_dir)!r} ({e.strerror}): pick another --out") from None
    markdown, draw, figsize = OUTPUTS[record["kind"]]
    paths = {"table": out_dir / "table.md", "json": out_dir / "results.json", "plot": out_dir / "plot.png"}
    text, data = markdown(record), json.dumps(record, indent=1, default=str) + "\n"
    write_result(paths["table"], lambda tmp: tmp.write_text(text), ABOVE)
    write_result(paths["json"], lambda tmp: tmp.write_text(data), ABOVE)
    if not plot:
        del paths["plot"]
        return paths
    try:
        import matplotlib
    except ImportError:
        raise BenchError("the plot needs matplotlib: pip install 'litvit[bench]' (or matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize, dpi=120)
    draw(record, ax)
    fig.tight_layout()
    try:
        write_result(paths["plot"], lambda tmp: fig.savefig(tmp, format="png"), ABOVE)
    finally:
        plt.close(fig)
    return paths


def table_text(record: Dict[str, Any]) -> str:
    """The markdown table of a result record (what table.md holds)."""
    return OUTPUTS[record["kind"]][0](record)
