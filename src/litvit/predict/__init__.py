"""`litvit predict`: the top-k classes of image files, folders or glob patterns, on screen and as JSON lines / CSV.

    from litvit.predict import predict
    records = predict(["photos/"], model="litv2_s", checkpoint="litv2_s.pth", top_k=5)

`run` holds the work (`predict`, `load_predict_model`), `classes` the class names and the top-k of a batch (shared
with the demo page), `inputs` the expansion of the arguments into files, `output` the table and the files, and
`cli` the arguments, which import no torch so that `litvit predict --help` is instant. The names below are loaded on
first use for the same reason.
"""

import importlib
from typing import Any

__all__ = ["class_names", "load_predict_model", "predict", "top_classes"]

# Public name -> the module defining it.
_WHERE = {"class_names": "classes", "top_classes": "classes", "load_predict_model": "run", "predict": "run"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
