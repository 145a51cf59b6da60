"""The files `litvit predict` reads: each argument is an image file, a folder (searched recursively for image files)
or a glob pattern (`photos/*.jpg`, `data/**/*.png`), expanded in a stable order.

A file named on its own is always tried, whatever its ending (an unreadable one is skipped and named later, when
it is read); in folders and patterns that match folders, only files with an image ending are taken, so that a
`README.txt` beside the photos is not a warning. An argument that names or matches nothing is a one-line error
before any model is built.
"""

import glob
import os
from typing import Iterable, List, Sequence, Union

from ..data.folder import image_extensions
from ..errors import ConfigError, DataError, DataNotFoundError

__all__ = ["expand_inputs"]

PathArg = Union[str, os.PathLike]
GLOB_CHARS = "*?["


def _images_in(folder: str) -> List[str]:
    """Image files under `folder`, hidden files and folders left out, sorted folder by folder."""
    exts = image_extensions()
    found: List[str] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [
            os.path.join(dirpath, f) for f in sorted(filenames) if not f.startswith(".") and f.lower().endswith(exts)
        ]
    return found


def _expand_one(arg: str) -> List[str]:
    if os.path.isdir(arg):
        found = _images_in(arg)
        if not found:
            raise DataError(f"{arg!r} holds no image files ({', '.join(image_extensions())}): pass a folder of images")
        return found
    if os.path.isfile(arg):
        return [arg]
    if os.path.exists(arg):  # a socket, a FIFO, a broken device: nothing to read
        raise DataError(f"{arg!r} is not a file or a folder: pass image files, folders or glob patterns")
    if not any(c in arg for c in GLOB_CHARS):
        raise DataNotFoundError(f"{arg!r} does not exist: pass image files, folders or glob patterns")
    found = []
    for match in sorted(glob.glob(arg, recursive=True)):
        if os.path.isdir(match):
            found += _images_in(match)
        elif os.path.isfile(match):
            found.append(match)
    if not found:
        raise DataNotFoundError(f"{arg!r} matches no file: check the pattern (quote it so the shell leaves it alone)")
    return found


def expand_inputs(args: Union[PathArg, Sequence[PathArg]]) -> List[str]:
    """Every file to predict, in argument order, each once (a file met twice keeps its first place)."""
    items = [args] if isinstance(args, (str, os.PathLike)) else list(args) if isinstance(args, Iterable) else [args]
    if not all(isinstance(a, (str, os.PathLike)) for a in items):
        raise ConfigError(
            f"inputs must be paths or glob patterns (str or os.PathLike), or a list of them: got {args!r}"
        )
    seen, files = set(), []
    for arg in items:
        for path in _expand_one(os.fspath(arg)):
            key = os.path.realpath(path)
            if key not in seen:
                seen.add(key)
                files.append(path)
    if not files:
        raise DataError("no input given: pass image files, folders or glob patterns")
    return files
