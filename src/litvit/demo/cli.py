"""`litvit demo`: a local web page showing what a LIT / LITv2 model sees in an image. Imports no torch here, so that
`litvit --help` stays instant; the model and the server are loaded by `run_cli`."""

import argparse
import sys

from ..command import add_command
from ..errors import ConfigError

# litv2_nano (10 classes, 32 px): a page answers in ~3 s on 2 CPU cores; litv2_s takes ~10 s (Grad-CAM ~9 s of it).
DEFAULT_MODEL = "litv2_nano"

DESCRIPTION = f"""A web page on this machine: drop or choose an image and see the model's top-5 classes and four
pictures (deformable sampling points, HiLo frequency curves, an attention map, Grad-CAM). See docs/demo.md.

Without --checkpoint the model has random weights (nothing is downloaded) and the page says so. Default model:
{DEFAULT_MODEL}, small and quick on a CPU (with --checkpoint: the checkpoint's); e.g. --model litv2_s --checkpoint
litv2_s.safetensors for ImageNet classes. The server listens on 127.0.0.1 only unless --host says
otherwise: do not expose it to a network. Stop it with Ctrl-C."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "demo",
        "a local web page: an image's top-5 classes, offsets, HiLo frequencies, attention and Grad-CAM",
        DESCRIPTION,
    )
    p.add_argument("--model", help=f"timm name (default: the checkpoint's, else {DEFAULT_MODEL})")
    p.add_argument("--checkpoint", help="weights file: official release, litvit convert output or training run")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on [default: 127.0.0.1, this machine only]")
    p.add_argument("--port", type=int, default=7860, help="[default: 7860]")
    p.add_argument("--max-mb", type=float, default=20.0, help="largest upload accepted, in MB [default: 20]")
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port} is not a port number: pass 1024-65535 (or 0 for any free port)")
    if args.max_mb <= 0:
        raise ConfigError("--max-mb must be > 0")
    try:
        import matplotlib

        matplotlib.use("Agg")  # the figures are drawn in the server, never on a screen
    except ImportError:  # no [viz] extra: the page shows the top-5 and says why each picture is missing
        pass

    from .app import load_demo_model
    from .server import serve

    model, labels, note, name = load_demo_model(
        args.model or (None if args.checkpoint else DEFAULT_MODEL), args.checkpoint
    )

    def announce(server) -> None:
        host, port = server.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        print(f"litvit demo: {name} on http://{host}:{port}/  (Ctrl-C stops it)", flush=True)
        if note:
            print(f"litvit demo: {note}", file=sys.stderr, flush=True)

    try:
        serve(
            model,
            labels,
            ready=announce,
            host=args.host,
            port=args.port,
            model_name=name,
            note=note,
            max_bytes=int(args.max_mb * 2**20),
        )
    except OSError as e:
        raise ConfigError(
            f"cannot listen on {args.host}:{args.port} ({e.strerror or e}): pass another --port (or stop the "
            "program using it)"
        ) from None
    print("\nlitvit demo: stopped", flush=True)
    return 0
