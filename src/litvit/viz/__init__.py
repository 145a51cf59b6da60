"""See what LIT and LITv2 do: DTM sampling points, HiLo frequency spectra, attention maps and Grad-CAM.

    from litvit.viz import load_image, offsets, frequency, attention, cam
    x, shown = load_image("cat.jpg", model)
    r = offsets(model, x)  # r.points: (T, 4**n, 2) input pixels each last-map token reads

Each tool returns numpy arrays (litvit.viz.plot draws them); all read the model through litvit.viz.capture's
temporary forward hooks, so the layers carry no visualisation code. The names are loaded on first use: `litvit viz`
registers its command line from litvit.viz.cli without importing torch.
"""

import importlib
from typing import Any

__all__ = ["attention", "cam", "capture", "frequency", "load_image", "offsets"]

# Public name -> the module defining it (module names differ from the names, so that importing a module never
# shadows the function of the same name on the package).
_WHERE = {
    "attention": "attention_maps",
    "cam": "gradcam",
    "capture": "hooks",
    "frequency": "spectra",
    "load_image": "image",
    "offsets": "dtm_trace",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
