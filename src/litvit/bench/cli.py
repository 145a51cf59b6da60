"""`litvit bench`: model throughput / latency / memory, or one attention layer (`--attention`).

Light at import (argparse, the config's plain defaults, litvit.variants): torch and timm load only when a benchmark
runs, so that `litvit --help` stays fast.
"""

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..command import add_command, run_command
from ..errors import BenchError
from .config import (
    DEFAULT_MODELS,
    LAYER_FIELDS,
    LAYERS,
    QUICK_LAYERS,
    QUICK_MODELS,
    RUNTIMES,
    BenchConfig,
    parse_sizes,
)

PROG = "litvit bench"

EPILOG = """examples:
  litvit bench                                  the paper's comparison (LITv2-S/M/B, LIT-Ti/S vs 5 peers)
  litvit bench litv2_s swin_tiny_patch4_window7_224 --dtype bf16 --threads 2
  litvit bench --mode train --batch-size 16 --no-latency
  litvit bench --attention --sizes 14 28 56 20x30
  litvit bench litv2_s --runtime eager compile+bf16 onnxruntime int8 --threads 2
                                                inference runtimes, one interleaved run (pip install 'litvit[deploy]')
  litvit bench litv2_s swin_tiny_patch4_window7_224 --profile --mode train
                                                per-op profile of a training step (OUT/profile.md, profile.json)
  litvit bench --quick                          a smoke run on two tiny models
outputs: OUT/table.md, OUT/results.json, OUT/plot.png (see docs/performance.md)"""

# Options that map one to one onto BenchConfig fields (None: not given, the config's default or --quick's applies).
CONFIG_OPTIONS = (
    "batch_size", "img_size", "dtype", "mode", "device", "threads", "compile", "warmup", "rounds", "repeats",
    "latency", "memory", "reference", "layers", "dim", "heads", "window", "alpha", "memory_jobs", "runtimes",
)  # fmt: skip


def add_arguments(p: argparse.ArgumentParser) -> None:
    models = " ".join(DEFAULT_MODELS)
    p.add_argument(
        "models",
        nargs="*",
        metavar="MODEL",
        help=f"timm model names, litvit's and any peers; LITV2_NAME:official runs that LITv2 as the official code "
        f"does (its layout and kernels, the same weights) (default: {models})",
    )
    p.add_argument("--attention", action="store_true", help="benchmark one attention layer instead of models")
    p.add_argument("--batch-size", type=int, help="images per step (default: 64 on GPU; CPU 16, attention 4)")
    p.add_argument("--img-size", type=int, help="square input resolution (default 224)")
    p.add_argument("--dtype", help="fp32 (default), bf16 (autocast), fp16 (autocast, GPU only) or auto")
    p.add_argument("--mode", help="infer (forward; default) or train (forward + backward + AdamW step)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's own choice)")
    p.add_argument("--compile", action="store_true", help="torch.compile every model / layer (warm-up compiles)")
    p.add_argument(
        "--profile",
        action="store_true",
        help="instead of timing: where each model's step spends its time, per kind of op (torch.profiler; eager)",
    )
    p.add_argument(
        "--runtime",
        nargs="+",
        dest="runtimes",
        metavar="RUNTIME",
        help=f"inference runtimes, each model runs in each: {', '.join(RUNTIMES)}; RUNTIME+bf16 runs one under bf16 "
        "autocast (compile+bf16, int8+bf16); frozen is torch.compile with inductor's weight freezing (default: eager)",
    )
    p.add_argument("--warmup", type=int, help="untimed calls per task before timing (default 2)")
    p.add_argument("--rounds", type=int, help="interleaved rounds over all tasks (default 3)")
    p.add_argument("--repeats", type=int, help="timed calls per task in each round (default 3)")
    p.add_argument("--latency", action=argparse.BooleanOptionalAction, help="batch-1 inference latency too (on)")
    p.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        help="peak memory in a fresh process per model / layer (RSS; GPU max_memory_allocated) (on)",
    )
    p.add_argument("--reference", help="model the ratio columns compare against (default: Swin-T when listed)")
    p.add_argument("--layers", nargs="+", help=f"attention layers (default: {' '.join(LAYERS)})")
    p.add_argument("--sizes", nargs="+", help="attention token grids, e.g. 14 28 56 20x30 (default 14 28 56)")
    p.add_argument("--dim", type=int, help="attention channels (default 768)")
    p.add_argument("--heads", type=int, help="attention heads (default 12)")
    p.add_argument("--window", type=int, help="HiLo window s (default 2)")
    p.add_argument("--alpha", type=float, help="HiLo Lo-Fi share of heads (default 0.9)")
    p.add_argument("--memory-jobs", type=int, help="memory child processes run at once (default 2)")
    p.add_argument("--out", type=Path, help="output folder (default out/bench or out/bench-attention)")
    p.add_argument("--quick", action="store_true", help="small smoke run: tiny models / layer, 1 round, 1 repeat")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """The run's config: explicit options, else --quick's values, else the config's defaults."""
    given: Dict[str, Any] = {k: getattr(args, k) for k in CONFIG_OPTIONS if getattr(args, k) is not None}
    if args.sizes:
        given["sizes"] = parse_sizes(args.sizes)
    if args.attention:
        if args.models:
            layers = " ".join(LAYERS)
            raise BenchError(
                f"--attention takes no model names (got {args.models[0]!r}): choose layers with --layers {layers}"
            )
        for opt, flag in (("img_size", "--img-size"), ("reference", "--reference"), ("runtimes", "--runtime")):
            if opt in given:
                raise BenchError(f"{flag} applies to the model benchmark, not --attention: drop it")
    else:
        for opt in LAYER_FIELDS:
            if opt in given:
                raise BenchError(f"--{opt} applies to the attention benchmark: add --attention or drop --{opt}")
        if args.models:
            given["models"] = list(args.models)
    quick = (QUICK_LAYERS if args.attention else QUICK_MODELS) if args.quick else {}
    return BenchConfig(attention=args.attention, verbose=not args.quiet, **{**quick, **given})


def run(args: argparse.Namespace) -> int:
    """Run the benchmark (a bad request raises a LitvitError before anything is measured; the command prints it)."""
    cfg = config_from_args(args)
    if args.profile:
        return run_profile(args, cfg)
    from .machine import command_line
    from .report import table_text, write_outputs
    from .runner import run_bench

    record = run_bench(cfg)
    if getattr(args, "argv", None) is not None:  # called as main(argv): record that, not the host's sys.argv
        record["machine"]["command"] = command_line(["litvit", "bench", *args.argv])
    out = args.out or Path("out/bench-attention" if cfg.attention else "out/bench")
    print(table_text(record))  # on the screen first: a full disk loses no results
    paths = write_outputs(record, out)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def run_profile(args: argparse.Namespace, cfg: BenchConfig) -> int:
    """`--profile`: the per-op profile of each model's step, written to OUT/profile.md and OUT/profile.json."""
    import json

    from ..checkpoint import write_result
    from ..runtime import set_threads
    from .machine import command_line, machine_info
    from .profile import profile_models, profile_table
    from .report import ABOVE
    from .runner import prepare, printer

    if cfg.attention or cfg.runtimes != ["eager"] or cfg.compile:
        raise BenchError("--profile profiles eager models: drop --attention, --runtime and --compile")
    cfg, device, amp = prepare(cfg)
    threads = set_threads(cfg.threads)
    profiles = profile_models(cfg, device, amp, printer(cfg.verbose))
    machine = machine_info(device, threads)
    if getattr(args, "argv", None) is not None:
        machine["command"] = command_line(["litvit", "bench", *args.argv])
    out = args.out or Path("out/bench-profile")
    out.mkdir(parents=True, exist_ok=True)
    what = f"{cfg.mode}, {cfg.dtype}, batch {cfg.batch_size}, {cfg.img_size}px, {threads} threads"
    head = [
        f"# Per-op profile: {what}",
        "",
        f"- Machine: {machine['cpu']} ({machine['cores']} cores); torch {machine['torch']}; {machine['date']}",
        f"- Command: `{machine['command']}`",
        f"- Self time per step over {cfg.repeats} profiled steps after {cfg.warmup} warm-up (profiler overhead "
        "included: read the shares)",
        "",
        "",
    ]
    text = "\n".join(head) + profile_table(profiles)
    print(text)
    write_result(out / "profile.md", lambda tmp: tmp.write_text(text), ABOVE)
    record = {"machine": machine, "config": {"mode": cfg.mode, "dtype": cfg.dtype, "batch_size": cfg.batch_size}}
    data = json.dumps({**record, "profiles": profiles}, indent=2)
    write_result(out / "profile.json", lambda tmp: tmp.write_text(data), ABOVE)
    print(f"wrote {out / 'profile.md'}, {out / 'profile.json'}")
    return 0


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `bench` subcommand to the `litvit` command."""
    p = add_command(
        subparsers,
        "bench",
        "throughput / latency / memory of models, or of one attention layer (--attention)",
        __doc__.split("\n\n")[0],
        epilog=EPILOG,
    )
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def build_parser() -> argparse.ArgumentParser:
    """A stand-alone parser for `litvit bench` (the benchmarks/ scripts use it)."""
    return register(argparse.ArgumentParser(prog="litvit").add_subparsers())


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = None if argv is None else list(argv)
    return run_command(PROG, args.func, args)


if __name__ == "__main__":
    sys.exit(main())
