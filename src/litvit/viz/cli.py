"""`litvit viz offsets | frequency | attention | cam IMAGE...`: figures and raw arrays of what a model does.

Imports no torch (the run itself is in litvit.viz.run), so `litvit --help` stays instant.
"""

import argparse

from ..command import add_command

KINDS = ("offsets", "frequency", "attention", "cam")

DESCRIPTION = """Figures (PNG) and raw arrays (.npz) of what a LIT / LITv2 model does with an image:

  offsets    where deformable token merging samples: each last-map token's 4**3 points traced to input pixels
  frequency  Fourier spectra of the Hi-Fi and Lo-Fi outputs of every HiLo layer (LITv2), mean over all images
  attention  one query token's attention per layer and head (--query Y X, fractions of height / width)
  cam        Grad-CAM of a class (--target, default the top-1)

Writes <image>_<kind>.png and .npz per image (frequency: frequency.png / .npz) into --out.
See docs/visualise.md for how to read each figure."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "viz", "figures of DTM offsets, HiLo spectra, attention maps, Grad-CAM", DESCRIPTION)
    p.add_argument("kind", choices=KINDS, help="what to show")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of images")
    p.add_argument("--model", required=True, help="timm name (litv2_s, lit_s, lit_ti, ...)")
    p.add_argument(
        "--checkpoint",
        help="weights: an official release, `litvit convert` output or litvit training checkpoint "
        "(default: random weights, with a warning)",
    )
    p.add_argument("--out", default="viz", help="output folder [default: viz]")
    p.add_argument("--img-size", type=int, help="input resolution (default: the model's)")
    p.add_argument(
        "--query", nargs=2, type=float, default=(0.5, 0.5), metavar=("Y", "X"), help="attention: query [0.5 0.5]"
    )
    p.add_argument("--target", type=int, help="cam: class index to explain [default: top-1]")
    p.add_argument("--grid", type=int, default=4, help="offsets: targets per side of the last map [default: 4]")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N [default: cpu]")
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    from .run import run_viz

    return run_viz(args)
