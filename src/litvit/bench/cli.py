"""`litvit bench`: model throughput / latency / memory, or one attention layer (`--attention`)."""

import argparse
import sys
from pathlib import Path
from typing import Any, List, Optional

from .core import BenchError, command_line, parse_sizes

PROG = "litvit bench"

EPILOG = """examples:
  litvit bench                                  the paper's comparison (LITv2-S/M/B, LIT-Ti/S vs 5 peers)
  litvit bench litv2_s swin_tiny_patch4_window7_224 --dtype bf16 --threads 2
  litvit bench --mode train --batch-size 16 --no-latency
  litvit bench --attention --sizes 14 28 56 20x30
  litvit bench --quick                          a smoke run on two tiny models
outputs: OUT/table.md, OUT/results.json, OUT/plot.png (see docs/performance.md)"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .attention import LAYERS
    from .models import DEFAULT_MODELS

    p.add_argument(
        "models",
        nargs="*",
        metavar="MODEL",
        help=f"timm model names, litvit's and any peers (default: {' '.join(DEFAULT_MODELS)})",
    )
    p.add_argument("--attention", action="store_true", help="benchmark one attention layer instead of models")
    p.add_argument("--batch-size", type=int, help="images per step (default: 64 on GPU; CPU 16, attention 4)")
    p.add_argument("--img-size", type=int, help="square input resolution (default 224)")
    p.add_argument("--dtype", default="fp32", help="fp32, bf16 (autocast) or fp16 (autocast, GPU only)")
    p.add_argument("--mode", default="infer", help="infer (forward) or train (forward + backward + AdamW step)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's own choice)")
    p.add_argument("--compile", action="store_true", help="torch.compile every model / layer (warm-up compiles)")
    p.add_argument("--warmup", type=int, help="untimed calls per task before timing (default 2)")
    p.add_argument("--rounds", type=int, help="interleaved rounds over all tasks (default 3)")
    p.add_argument("--repeats", type=int, help="timed calls per task in each round (default 3)")
    p.add_argument(
        "--latency", action=argparse.BooleanOptionalAction, default=True, help="batch-1 inference latency too"
    )
    p.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="peak memory in a fresh process per model / layer (RSS; GPU max_memory_allocated)",
    )
    p.add_argument("--reference", help="model the ratio columns compare against (default: Swin-T when listed)")
    p.add_argument("--layers", nargs="+", help=f"attention layers (default: {' '.join(LAYERS)})")
    p.add_argument("--sizes", nargs="+", help="attention token grids, e.g. 14 28 56 20x30 (default 14 28 56)")
    p.add_argument("--dim", type=int, help="attention channels (default 768)")
    p.add_argument("--heads", type=int, help="attention heads (default 12)")
    p.add_argument("--window", type=int, help="HiLo window s (default 2)")
    p.add_argument("--alpha", type=float, help="HiLo Lo-Fi share of heads (default 0.9)")
    p.add_argument("--memory-jobs", type=int, default=2, help="memory child processes run at once (default 2)")
    p.add_argument("--out", type=Path, help="output folder (default out/bench or out/bench-attention)")
    p.add_argument("--quick", action="store_true", help="small smoke run: tiny models / layer, 1 round, 1 repeat")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `bench` subcommand to the `litvit` command."""
    p = subparsers.add_parser(
        "bench",
        help="throughput / latency / memory of models, or of one attention layer (--attention)",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def _pick(value: Optional[Any], quick: bool, quick_value: Any, default: Any) -> Any:
    if value is not None:
        return value
    return quick_value if quick else default


def _model_config(args: argparse.Namespace):
    from .models import DEFAULT_MODELS, QUICK_MODELS, ModelBenchConfig

    for opt in ("layers", "sizes", "dim", "heads", "window", "alpha"):
        if getattr(args, opt) is not None:
            raise BenchError(f"--{opt} applies to the attention benchmark: add --attention or drop --{opt}")
    q = args.quick
    return ModelBenchConfig(
        models=list(args.models) or list(QUICK_MODELS if q else DEFAULT_MODELS),
        batch_size=_pick(args.batch_size, q, 2, None),
        img_size=_pick(args.img_size, q, 64, 224),
        dtype=args.dtype,
        mode=args.mode,
        device=args.device,
        threads=args.threads,
        compile=args.compile,
        warmup=_pick(args.warmup, q, 1, 2),
        rounds=_pick(args.rounds, q, 1, 3),
        repeats=_pick(args.repeats, q, 1, 3),
        latency=args.latency,
        memory=args.memory,
        reference=args.reference,
        memory_jobs=args.memory_jobs,
        verbose=not args.quiet,
    )


def _attention_config(args: argparse.Namespace):
    from .attention import DEFAULT_SIZES, LAYERS, AttentionBenchConfig

    if args.models:
        raise BenchError(
            f"--attention takes no model names (got {args.models[0]!r}): choose layers with --layers {' '.join(LAYERS)}"
        )
    for opt, flag in (("img_size", "--img-size"), ("reference", "--reference")):
        if getattr(args, opt) is not None:
            raise BenchError(f"{flag} applies to the model benchmark: use --sizes for the attention token grids")
    q = args.quick
    sizes = parse_sizes(args.sizes) if args.sizes else [(7, 7), (14, 14)] if q else list(DEFAULT_SIZES)
    return AttentionBenchConfig(
        layers=list(args.layers or LAYERS),
        sizes=sizes,
        dim=_pick(args.dim, q, 96, 768),
        heads=_pick(args.heads, q, 3, 12),
        window=args.window if args.window is not None else 2,
        alpha=args.alpha if args.alpha is not None else 0.9,
        batch_size=_pick(args.batch_size, q, 2, None),
        dtype=args.dtype,
        mode=args.mode,
        device=args.device,
        threads=args.threads,
        compile=args.compile,
        warmup=_pick(args.warmup, q, 1, 2),
        rounds=_pick(args.rounds, q, 1, 3),
        repeats=_pick(args.repeats, q, 1, 3),
        memory=args.memory,
        memory_jobs=args.memory_jobs,
        verbose=not args.quiet,
    )


def run(args: argparse.Namespace) -> int:
    from .report import write_outputs

    try:
        for opt in ("warmup", "rounds", "repeats", "memory_jobs"):
            v = getattr(args, opt)
            minimum = 0 if opt == "warmup" else 1
            if v is not None and v < minimum:
                raise BenchError(f"--{opt.replace('_', '-')} must be >= {minimum}, got {v}")
        if args.attention:
            from .attention import run_attention_bench

            cfg = _attention_config(args)
            record = run_attention_bench(cfg)
            out = args.out or Path("out/bench-attention")
        else:
            from .models import run_model_bench

            cfg = _model_config(args)
            record = run_model_bench(cfg)
            out = args.out or Path("out/bench")
        if getattr(args, "argv", None) is not None:  # called as main(argv): record that, not the host's sys.argv
            record["machine"]["command"] = command_line(["litvit", "bench", *args.argv])
        paths = write_outputs(record, out)
    except BenchError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    print(paths["table"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """A stand-alone parser for `litvit bench` (the benchmarks/ scripts use it)."""
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = None if argv is None else list(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
