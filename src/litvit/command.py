"""Running one `litvit` command: register the models, run it, and turn a LitvitError into one line on stderr and
its exit status. Shared by `litvit ...` and the `python -m litvit.train | litvit.eval` forms torchrun starts."""

import argparse
import importlib
import os
import sys
from typing import Any, Callable

from .errors import LitvitError, report


def run_command(prog: str, func: Callable[[argparse.Namespace], Any], args: argparse.Namespace) -> int:
    rank = int(os.environ.get("RANK", "0"))
    try:
        importlib.import_module("litvit.models")  # registers the models with timm (imports torch and timm)
        return int(func(args) or 0)
    except LitvitError as e:
        return report(prog, e, rank)
    except KeyboardInterrupt:
        if rank == 0:
            hint = getattr(args, "interrupt_hint", "")
            print(f"\n{prog}: interrupted{'; ' + hint if hint else ''}", file=sys.stderr)
        return 130
