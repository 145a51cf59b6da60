"""What HiLo's two branches pass: the Fourier spectrum of the Hi-Fi and Lo-Fi outputs of every LITv2 HiLo layer.

LITv2's claim is that the windowed (Hi-Fi) heads keep high frequencies and the pooled (Lo-Fi) heads low ones. A
branch's output map is transformed with a 2-D FFT per channel; its log amplitude, centred (fftshift) and averaged
over channels and images, is the spectrum image; binned by radius it becomes a curve over frequency 0 (the map's
mean) .. 1 (the corner of the spectrum, the highest frequency the map holds). Curves are relative: the log amplitude
minus its value at frequency 0, so a branch that keeps high frequencies has a curve that falls less.
"""

from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..layers.hilo import HiLo
from ._model import evaluating, model_input
from .hooks import capture

__all__ = ["FrequencyResult", "frequency", "log_amplitude", "radial_profile"]

EPS = 1e-6  # keeps log() finite on an exactly zero Fourier coefficient


@dataclass
class FrequencyResult:
    """Spectra of `frequency()`.

    layers: names of the HiLo layers that have both branches, in forward order.
    freqs: (F,) radial frequency in [0, 1] (0: the mean, 1: the spectrum's corner).
    hifi, lofi: (L, F) relative log amplitude of each layer's Hi-Fi / Lo-Fi output (0 at frequency 0).
    spectra: layer name -> (2, h, w) mean log-amplitude spectrum images (Hi-Fi, Lo-Fi), zero frequency centred.
    """

    layers: List[str]
    freqs: np.ndarray
    hifi: np.ndarray
    lofi: np.ndarray
    spectra: Dict[str, np.ndarray]


def log_amplitude(maps: torch.Tensor) -> np.ndarray:
    """(B, H, W, C) channels-last maps -> (H, W) log |FFT2| over H and W, averaged over images and channels, with
    frequency 0 at (H // 2, W // 2) (fftshift)."""
    spectrum = torch.fft.fft2(maps.double(), dim=(1, 2)).abs().add(EPS).log().mean(dim=(0, 3))  # (H, W)
    return torch.fft.fftshift(spectrum).cpu().numpy()


def radial_profile(spectrum: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Mean of a centred (H, W) spectrum over rings of equal radial frequency: (freqs (F,), values (F,)).

    The radius of a frequency (fy, fx) (cycles per token) is divided by the largest radius on the map, so 1 is the
    corner; F = min(H, W) // 2 + 1 rings (frequency 0 alone in the first on square maps). A ring with no frequency
    in it is interpolated from its neighbours.
    """
    h, w = spectrum.shape
    fy = np.fft.fftshift(np.fft.fftfreq(h))
    fx = np.fft.fftshift(np.fft.fftfreq(w))
    radius = np.hypot(fy[:, None], fx[None, :])  # (H, W)
    if radius.max() == 0:  # a 1 x 1 map: frequency 0 only
        return np.zeros(1), spectrum.reshape(1).astype(np.float64)
    bins = max(min(h, w) // 2 + 1, 2)
    index = np.rint(radius / radius.max() * (bins - 1)).astype(int).ravel()
    sums = np.bincount(index, weights=spectrum.ravel(), minlength=bins)
    counts = np.bincount(index, minlength=bins)
    freqs = np.linspace(0.0, 1.0, bins)
    filled = counts > 0
    return freqs, np.interp(freqs, freqs[filled], sums[filled] / counts[filled])


def _relative_curve(spectrum: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """The radial profile of `spectrum` on the common `freqs`, minus its value at frequency 0."""
    own_freqs, values = radial_profile(spectrum)
    curve = np.interp(freqs, own_freqs, values) if len(own_freqs) > 1 else np.full(len(freqs), values[0])
    return curve - curve[0]


def hilo_layers(model: nn.Module) -> List[Tuple[str, HiLo]]:
    """The HiLo layers with both a Hi-Fi and a Lo-Fi branch (LITv2's stage-4 layers are all Lo-Fi: left out)."""
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, HiLo) and m.h_heads > 0 and m.l_heads > 0]
    if not found:
        raise ConfigError(
            f"{type(model).__name__} has no HiLo layer with both Hi-Fi and Lo-Fi heads: frequency needs a LITv2 model"
        )
    return found


def frequency(model: nn.Module, xs: torch.Tensor, batch_size: int = 8) -> FrequencyResult:
    """Spectra of the Hi-Fi and Lo-Fi outputs of every HiLo layer, averaged over the images `xs` (B, 3, H, W).

    A HiLo output is its Hi-Fi channels (the h_proj output, cropped to the map) followed by its Lo-Fi channels
    (the l_proj output): the layer's output is captured and split there. Images run `batch_size` at a time.
    """
    layers = hilo_layers(model)
    xs = model_input(model, xs)
    sums: Dict[str, np.ndarray] = {}
    for start in range(0, xs.shape[0], batch_size):
        chunk = xs[start : start + batch_size]
        with torch.no_grad(), evaluating(model), capture(dict(layers)) as seen:
            model(chunk)
        for name, layer in layers:
            out = seen[name][0]  # (b, H, W, C): Hi-Fi channels first
            pair = np.stack([log_amplitude(out[..., : layer.h_dim]), log_amplitude(out[..., layer.h_dim :])])
            sums[name] = sums.get(name, 0) + pair * chunk.shape[0]  # (2, H, W), weighted by images
    spectra = {name: sums[name] / xs.shape[0] for name, _ in layers}
    bins = max(len(radial_profile(s[0])[0]) for s in spectra.values())
    freqs = np.linspace(0.0, 1.0, max(bins, 2))
    hifi = np.stack([_relative_curve(spectra[n][0], freqs) for n, _ in layers])
    lofi = np.stack([_relative_curve(spectra[n][1], freqs) for n, _ in layers])
    return FrequencyResult([n for n, _ in layers], freqs, hifi, lofi, spectra)
