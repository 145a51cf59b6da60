"""The body of `litvit viz`: the model and its weights, the images, one tool, its figures and arrays on disk.

Bad flags, model names and checkpoints stop the command with one line (ConfigError / CheckpointError, exit 2)
before any image is read; an unreadable image is named on stderr and skipped, the others go on.
"""

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import timm
import torch
from PIL import Image
from torch import nn

from ..checkpoint import write_result
from ..data.folder import image_extensions
from ..errors import CheckpointNotFoundError, ConfigError, DataError
from ..options import check_img_size
from ..tasks.classification import check_input_size, check_model_name
from . import plot
from .attention_maps import attention
from .dtm_trace import offsets
from .gradcam import cam
from .image import load_image
from .spectra import frequency

PROG = "litvit viz"


def load_viz_model(name: str, checkpoint: Optional[str]) -> nn.Module:
    """`name` with the weights of `checkpoint` (any file `litvit eval` reads), or random weights with a warning.
    The model is built for its own input size; it runs at any other (--img-size only changes the transform)."""
    check_model_name(name)
    if checkpoint is None:
        warning = f"{PROG}: no --checkpoint: {name} has random weights (pass the released file for real figures)"
        print(warning, file=sys.stderr)
        return timm.create_model(name)
    if not Path(checkpoint).is_file():
        raise CheckpointNotFoundError(f"checkpoint {checkpoint!r} does not exist: pass the path of a weights file")
    from ..eval.evaluate import load_eval_model

    model, _ = load_eval_model(name, checkpoint)
    return model


def image_paths(items: List[str]) -> List[Path]:
    """The image files named, and those in the folders named (sorted, recursive); a missing path is named and
    skipped."""
    found: List[Path] = []
    exts = image_extensions()
    for item in items:
        path = Path(item)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(exts)))
        elif path.is_file():
            found.append(path)
        else:
            print(f"{PROG}: skipped {item!r}: no such file or folder", file=sys.stderr)
    return found


def _stems(paths: List[Path]) -> List[str]:
    """A distinct output name per image: its file stem, numbered when two images share one."""
    seen: Dict[str, int] = {}
    names = []
    for path in paths:
        count = seen.get(path.stem, 0)
        seen[path.stem] = count + 1
        names.append(path.stem if count == 0 else f"{path.stem}_{count}")
    return names


def _write(out: Path, name: str, fig: object, arrays: Dict[str, np.ndarray]) -> None:
    png = plot.save_png(fig, out / f"{name}.png")
    write_result(out / f"{name}.npz", lambda tmp: _savez(tmp, arrays), ": pick another --out")
    print(f"wrote {png} and {name}.npz")


def _savez(path: Path, arrays: Dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:  # a file object: np.savez would append .npz to the temporary name
        np.savez_compressed(f, **arrays)


def _load_all(
    paths: List[Path], model: nn.Module, img_size: Optional[int]
) -> List[Tuple[str, torch.Tensor, Image.Image]]:
    loaded = []
    for stem, path in zip(_stems(paths), paths):
        try:
            x, shown = load_image(path, model, img_size)
        except DataError as e:
            print(f"{PROG}: skipped: {e}", file=sys.stderr)
            continue
        loaded.append((stem, x, shown))
    if not loaded:
        raise DataError("no readable image among the IMAGE arguments: pass JPEG / PNG files or folders of them")
    return loaded


def run_viz(args: argparse.Namespace) -> int:
    if args.grid < 1:
        raise ConfigError(f"--grid must be >= 1 (targets per side of the last map), got {args.grid}")
    if not all(0.0 <= q <= 1.0 for q in args.query):
        raise ConfigError(f"--query takes two fractions Y X in [0, 1], got {' '.join(map(str, args.query))}")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise ConfigError(f"--device {args.device!r} is not a device: pass cpu, cuda or cuda:N") from None
    check_img_size(args.img_size)
    model = load_viz_model(args.model, args.checkpoint).to(device).eval()
    if args.img_size:
        check_input_size(model, args.img_size)
    if args.kind == "cam" and args.target is not None and not 0 <= args.target < getattr(model, "num_classes", 0):
        raise ConfigError(f"--target must be a class index in 0..{model.num_classes - 1}, got {args.target}")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create output folder {str(out)!r} ({e.strerror or e}): pick another --out") from None
    loaded = _load_all(image_paths(args.images), model, args.img_size)
    if args.kind == "frequency":
        r = frequency(model, torch.cat([x for _, x, _ in loaded]))
        spectra = {f"spectra/{name}": s for name, s in r.spectra.items()}
        arrays = dict(layers=np.array(r.layers), freqs=r.freqs, hifi=r.hifi, lofi=r.lofi, **spectra)
        _write(out, "frequency", plot.frequency_figure(r), arrays)
        return 0
    for stem, x, shown in loaded:
        if args.kind == "offsets":
            r = offsets(model, x, grid=args.grid)
            fields = {f"fields/{name}": f for name, f in zip(r.layers, r.fields)}
            arrays = dict(targets=r.targets, points=r.points, target_pixels=r.target_pixels, stride=r.stride, **fields)
            _write(out, f"{stem}_offsets", plot.offsets_figure(r, shown), arrays)
        elif args.kind == "attention":
            r = attention(model, x, tuple(args.query))
            arrays = {f"maps/{name}": m for name, m in r.maps}
            arrays.update({f"raw/{name}": p for name, p in r.raw})
            arrays.update(query=np.array(r.query), query_pixel=np.array(r.query_pixel))
            _write(out, f"{stem}_attention", plot.attention_figure(r, shown), arrays)
        else:
            heat, index = cam(model, x, args.target)
            _write(out, f"{stem}_cam", plot.cam_figure(heat, shown, index), dict(heat=heat, index=index))
    return 0
