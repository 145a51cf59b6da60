"""Figures of the viz results: matplotlib Figures on the Agg canvas, built without pyplot (no global state, no
display needed, safe in threads and servers); `save_png` writes them. Drawing only: every number comes from the
tool that computed it."""

from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
from PIL import Image

from ..checkpoint import write_result
from ..errors import ConfigError

__all__ = ["attention_figure", "cam_figure", "frequency_figure", "offsets_figure", "save_png"]


def _figure(width: float, height: float) -> Any:
    """An empty Figure with an Agg canvas, `width` x `height` inches."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("the viz figures need matplotlib: pip install 'litvit[viz]'") from None
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _colour(k: int) -> Any:
    """The k-th colour of matplotlib's tab10 cycle."""
    from matplotlib import colormaps

    return colormaps["tab10"](k % 10)


def _image_axes(ax: Any, shown: Image.Image, title: str = "") -> None:
    ax.imshow(np.asarray(shown))
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def offsets_figure(r: Any, shown: Image.Image) -> Any:
    """The image with each target's traced DTM sampling points (one colour per target, a star at the target)."""
    fig = _figure(6.0, 6.0 * shown.height / shown.width + 0.4)
    ax = fig.add_subplot(1, 1, 1)
    per = r.points.shape[1]
    _image_axes(ax, shown, f"DTM sampling points: {per} per target ({len(r.layers)} merges)")
    for k, (points, centre) in enumerate(zip(r.points, r.target_pixels)):
        c = _colour(k)
        ax.scatter(points[:, 1], points[:, 0], s=6, color=c, alpha=0.85, linewidths=0)
        ax.scatter([centre[1]], [centre[0]], s=90, marker="*", color=c, edgecolors="white", linewidths=0.8)
    ax.set_xlim(-0.5, shown.width - 0.5)
    ax.set_ylim(shown.height - 0.5, -0.5)
    fig.tight_layout()
    return fig


def frequency_figure(r: Any) -> Any:
    """Relative log amplitude over frequency of every HiLo layer's Hi-Fi (red) and Lo-Fi (blue) output, darker
    deeper in the network, and the spectra of the first layer."""
    from matplotlib import colormaps

    fig = _figure(11.0, 3.6)
    curves = fig.add_subplot(1, 3, 1)
    n = len(r.layers)
    for i, _ in enumerate(r.layers):
        shade = 0.35 + 0.6 * (i + 1) / n
        curves.plot(r.freqs, r.hifi[i], color=colormaps["Reds"](shade), lw=1.4)
        curves.plot(r.freqs, r.lofi[i], color=colormaps["Blues"](shade), lw=1.4, ls="--")
    curves.plot([], [], color="tab:red", label="Hi-Fi (windows)")
    curves.plot([], [], color="tab:blue", ls="--", label="Lo-Fi (pooled)")
    curves.set_xlabel("frequency (0: mean, 1: highest)")
    curves.set_ylabel("log amplitude - value at 0")
    curves.set_title(f"{n} HiLo layers (darker: deeper)", fontsize=9)
    curves.legend(fontsize=8)
    first = r.layers[0]
    for j, label in enumerate(("Hi-Fi", "Lo-Fi")):
        ax = fig.add_subplot(1, 3, 2 + j)
        im = ax.imshow(r.spectra[first][j], cmap="viridis")
        ax.set_title(f"{first} {label}\nlog amplitude (centre: frequency 0)", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def attention_figure(r: Any, shown: Image.Image, max_heads: int = 8) -> Any:
    """One row per attention entry, one column per head (at most `max_heads`): the query's attention over the
    image (each head scaled to its own maximum), the query marked by a cross."""
    rows = len(r.maps)
    cols = min(max(m.shape[0] for _, m in r.maps), max_heads)
    cell = 1.7
    fig = _figure(cell * cols + 1.6, cell * rows * shown.height / shown.width + 0.5)
    for i, (name, maps) in enumerate(r.maps):
        for h in range(cols):
            ax = fig.add_subplot(rows, cols, i * cols + h + 1)
            ax.set_xticks([])
            ax.set_yticks([])
            if h >= maps.shape[0]:
                ax.axis("off")
                continue
            ax.imshow(np.asarray(shown))
            peak = maps[h].max()
            ax.imshow(maps[h] / peak if peak > 0 else maps[h], cmap="inferno", alpha=0.65, vmin=0, vmax=1)
            ax.plot([r.query_pixel[1]], [r.query_pixel[0]], marker="x", color="cyan", ms=6, mew=1.5)
            if i == 0:
                ax.set_title(f"head {h}", fontsize=8)
            if h == 0:
                ax.set_ylabel(name, fontsize=6)
    fig.tight_layout(pad=0.3)
    return fig


def cam_figure(heat: np.ndarray, shown: Image.Image, index: Optional[int] = None) -> Any:
    """The image and its Grad-CAM heat map over it (class `index` in the title if given)."""
    fig = _figure(8.0, 4.0 * shown.height / shown.width + 0.5)
    _image_axes(fig.add_subplot(1, 2, 1), shown, "input")
    ax = fig.add_subplot(1, 2, 2)
    _image_axes(ax, shown, "Grad-CAM" + (f" of class {index}" if index is not None else ""))
    im = ax.imshow(heat, cmap="jet", alpha=0.5, vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def save_png(fig: Any, path: Union[str, Path], dpi: Optional[int] = None) -> Path:
    """Write `fig` as a PNG, whole or not at all (parent folders created; `dpi` default the figure's, 100) and return
    the path; a full disk is one CheckpointSaveError line."""
    path = Path(path)
    write_result(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi or fig.dpi), ": pick another --out")
    return path
