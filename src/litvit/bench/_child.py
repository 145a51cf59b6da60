"""Peak memory of one subject in a fresh process: ``python -m litvit.bench._child SPEC_JSON``.

The process imports torch, timm and litvit (and the benchmark modules), records its resident memory, builds the
subject the spec names (a model or a layer, with the runner's own `build_subject`), records again, runs the measured
step ``iters`` times and prints one JSON line:

* ``rss_import_bytes`` / ``peak_import_bytes``: resident / peak resident memory after the imports;
* ``rss_built_bytes`` / ``peak_built_bytes``: resident / peak memory once the subject and its input exist;
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

    import litvit.models  # noqa: F401  (registers litvit's models with timm)
    from litvit.allocator import keep_freed_memory
    from litvit.bench.memory import current_rss_bytes, peak_rss_bytes, reset_peak_rss, ru_maxrss_bytes
    from litvit.bench.runner import KINDS
    from litvit.bench.runtimes import build_runtime
    from litvit.bench.subject import build_subject, make_step
    from litvit.runtime import autocast_dtype

    keep_freed_memory()  # the same allocator as the timed run in the parent
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

    if spec["kind"] not in KINDS:
        raise ValueError(f"unknown child kind {spec['kind']!r}")
    kind, mode = KINDS[spec["kind"]], spec["mode"]
    subject = build_subject(kind, spec, int(spec["batch_size"]), device, mode)
    amp = autocast_dtype(spec["dtype"], device)
    runtime = spec.get("runtime", "compile" if spec.get("compile") else "eager")
    module, _ = build_runtime(runtime, subject.module, subject.x, amp)
    step = make_step(module, subject.x, mode, amp, kind.loss(), kind.per_call_mode)

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
