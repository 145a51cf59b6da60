"""HiLo spectra: the spectrum helpers put a sinusoid's energy at its frequency; the tool's curves are finite, 0 at
frequency 0, one per HiLo layer with both branches."""

import numpy as np
import pytest
import torch

from litvit.errors import ConfigError
from litvit.viz import frequency
from litvit.viz.spectra import log_amplitude, radial_profile

from .conftest import tiny


def _wave(h: int, w: int, fy: int, fx: int) -> torch.Tensor:
    """(1, h, w, 3) map cos(2 pi (fy y / h + fx x / w)) in every channel."""
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    wave = torch.cos(2 * torch.pi * (fy * y / h + fx * x / w))  # fp64: the other coefficients are ~1e-15, not 1e-6
    return wave[None, :, :, None].expand(1, h, w, 3)


def test_sinusoid_energy_is_at_its_frequency():
    spectrum = log_amplitude(_wave(16, 16, 0, 3))
    assert spectrum.shape == (16, 16)
    top = np.argsort(spectrum.ravel())[-2:]
    peaks = {tuple(int(v) for v in np.unravel_index(i, spectrum.shape)) for i in top}
    assert peaks == {(8, 5), (8, 11)}  # frequency 0 at (8, 8), the wave at +-3 columns
    assert spectrum[8, 5] > np.log(100) and spectrum[0, 0] < np.log(1e-3)


def test_radial_profile_peaks_at_the_wave_radius():
    freqs, values = radial_profile(log_amplitude(_wave(16, 16, 3, 0)))
    assert len(freqs) == 9 and freqs[0] == 0 and freqs[-1] == 1
    # radius 3/16 cycles per token, over the corner's sqrt(2) / 2: ring round(0.265 * 8) = 2; the rest at log(EPS)
    assert int(np.argmax(values)) == 2
    np.testing.assert_allclose(np.delete(values, 2), np.log(1e-6), atol=1e-6)


def test_constant_map_has_only_frequency_zero():
    freqs, values = radial_profile(log_amplitude(torch.ones(1, 8, 8, 2)))
    assert values[0] > np.log(60) and (values[1:] < np.log(1e-3)).all()


def test_frequency_curves_of_litv2(image):
    model = tiny("litv2")
    r = frequency(model, torch.cat([image, torch.randn(1, 3, 64, 64)]))
    assert r.layers == ["layers.2.blocks.0.attn", "layers.2.blocks.1.attn"]  # stage 4 is all Lo-Fi: left out
    assert r.hifi.shape == r.lofi.shape == (2, len(r.freqs))
    assert np.isfinite(r.hifi).all() and np.isfinite(r.lofi).all()
    assert (r.hifi[:, 0] == 0).all() and (r.lofi[:, 0] == 0).all()
    assert r.freqs[0] == 0 and r.freqs[-1] == 1
    assert r.spectra["layers.2.blocks.0.attn"].shape == (2, 4, 4)  # (hifi, lofi) on stage 3's 4 x 4 map


def test_frequency_is_the_mean_over_images():
    model = tiny("litv2")
    a, b = torch.randn(1, 3, 48, 48), torch.randn(1, 3, 48, 48)
    both = frequency(model, torch.cat([a, b]), batch_size=1)
    ra, rb = frequency(model, a), frequency(model, b)
    for name in both.layers:
        np.testing.assert_allclose(both.spectra[name], (ra.spectra[name] + rb.spectra[name]) / 2, atol=1e-9)


def test_frequency_needs_hilo():
    with pytest.raises(ConfigError, match="LITv2"):
        frequency(tiny("lit"), torch.randn(1, 3, 64, 64))
