"""Peak memory of one model or layer in a fresh process: ``python -m litvit.bench._child SPEC_JSON``.

The process imports torch, timm and litvit (and the benchmark modules), records its resident memory, builds what the
spec names, records again, runs the measured step ``iters`` times and prints one JSON line:

* ``rss_import_bytes`` / ``peak_import_bytes``: resident / peak resident memory after the imports;
* ``rss_built_bytes`` / ``peak_built_bytes``: resident / peak memory once the model (or layer) and its input exist;
* ``step_peak_bytes``: the peak resident memory while the steps run (the peak is reset to the current RSS through
  /proc/self/clear_refs after building; None where the kernel refuses);
* ``peak_rss_bytes``: the process's peak, imports and building included: Linux's VmHWM, the counter behind
  ``getrusage(RUSAGE_SELF).ru_maxrss`` without the parent's peak that ru_maxrss carries over a fork + exec
  (``ru_maxrss_bytes`` holds the raw value);
* on CUDA, ``cuda_built_bytes`` and ``cuda_peak_bytes`` (``torch.cuda.max_memory_allocated``).

``{"kind": "baseline"}`` builds nothing: its peak is what every child pays before building anything.
"""

import json
import sys
from typing import Any, Dict, List, Optional


def measure(spec: Dict[str, Any]) -> Dict[str, Any]:
    import timm  # noqa: F401
    import torch

    import litvit  # noqa: F401
    from litvit.bench import attention, models
    from litvit.bench.core import current_rss_bytes, peak_rss_bytes, reset_peak_rss, ru_maxrss_bytes

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    device = torch.device(spec.get("device", "cpu"))
    if device.type == "cuda":
        torch.zeros(1, device=device)  # the CUDA context belongs to the baseline too
    report: Dict[str, Any] = {
        "kind": spec["kind"],
        "name": spec.get("name"),
        "threads": torch.get_num_threads(),
        "rss_import_bytes": current_rss_bytes(),
        "peak_import_bytes": peak_rss_bytes(),
    }
    if spec["kind"] == "baseline":
        report["peak_rss_bytes"] = peak_rss_bytes()
        report["ru_maxrss_bytes"] = ru_maxrss_bytes()
        return report

    batch = int(spec["batch_size"])
    if spec["kind"] == "model":
        torch.manual_seed(0)
        module = models.create_model(spec["name"], int(spec["img_size"])).to(device)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch, 3, spec["img_size"], spec["img_size"], generator=g).to(device)
        loss_fn = None
        train_layout = True
    elif spec["kind"] == "layer":
        size = (int(spec["size"][0]), int(spec["size"][1]))
        module = attention.build_layer(spec["name"], spec["dim"], spec["heads"], size, spec["window"], spec["alpha"])
        module = module.to(device).train(spec["mode"] == "train")
        x = attention.layer_input(batch, size, spec["dim"], device)
        loss_fn = attention.layer_loss
        train_layout = False
    else:
        raise ValueError(f"unknown child kind {spec['kind']!r}")
    runner = torch.compile(module, dynamic=False) if spec.get("compile") else module
    step = models.make_step(runner, x, spec["mode"], spec["dtype"], train_layout=train_layout, loss_fn=loss_fn)

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        report["cuda_built_bytes"] = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    report["rss_built_bytes"] = current_rss_bytes()
    report["peak_built_bytes"] = peak_rss_bytes()  # imports and building included
    report["peak_reset"] = reset_peak_rss()  # from here on the peak counts the measured steps only
    for _ in range(int(spec.get("iters", 2))):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        report["cuda_peak_bytes"] = torch.cuda.max_memory_allocated(device)
    end_peak = peak_rss_bytes()
    report["step_peak_bytes"] = end_peak if report["peak_reset"] else None
    report["peak_rss_bytes"] = max(report["peak_built_bytes"], end_peak)
    report["ru_maxrss_bytes"] = ru_maxrss_bytes()
    return report


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m litvit.bench._child SPEC_JSON", file=sys.stderr)
        return 2
    print(json.dumps(measure(json.loads(argv[0]))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
