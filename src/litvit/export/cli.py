"""`litvit export --model NAME [--checkpoint FILE] --format onnx|pt2|aoti [--check]`.

Imports no torch (the export itself is litvit.export.run), so `litvit --help` stays instant.
"""

import argparse

from ..command import add_command

FORMATS = ("onnx", "pt2", "aoti")

DESCRIPTION = """Write a model for deployment, traced once with torch.export (docs/deploy.md):

  onnx  ONNX (opset >= 19; deformable token merging as DeformConv) for onnxruntime and TensorRT;
        batch, height and width dynamic, right at every size the model accepts
  pt2   a torch.export program (torch.export.load(FILE).module()); dynamic batch, height and width >= the
        smallest side whose last-stage map is 2x2 (61 for the released models)
  aoti  an AOTInductor package (torch._inductor.aoti_load_package(FILE)) that runs without litvit
        (import torchvision in the runner); the same sizes as pt2; compiling takes minutes

--static fixes height and width at --size (any size the model accepts); the batch stays dynamic.
--check runs the written file at several sizes and batches and compares it with PyTorch (exit 1 above
--tolerance)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "export", "ONNX / torch.export / AOTInductor files of a model", DESCRIPTION)
    p.add_argument("--model", required=True, help="timm name (litv2_s, lit_s, lit_ti, litv2_nano, ...)")
    p.add_argument(
        "--checkpoint", help="weights: an official release, `litvit convert` output or litvit training checkpoint"
    )
    p.add_argument("--format", choices=FORMATS, default="onnx", help="[default: onnx]")
    p.add_argument("--backbone", choices=("det", "seg"), help="export the dense backbone (four NCHW maps) instead")
    p.add_argument("--out", help="output file [default: MODEL.onnx, MODEL.pt2 or MODEL.aoti.pt2]")
    p.add_argument("--size", help="tracing size N or HxW [default: the model's, 224]; the only size with --static")
    p.add_argument("--static", action="store_true", help="fixed height and width (batch stays dynamic)")
    p.add_argument("--opset", type=int, default=20, help="ONNX opset, >= 19 [default: 20]")
    p.add_argument("--check", action="store_true", help="compare the written file with PyTorch at several sizes")
    p.add_argument(
        "--tolerance", type=float, default=1e-4, help="--check: max |diff| / max(1, max |output|) [default: 1e-4]"
    )
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    from .run import run_export

    return run_export(args)
