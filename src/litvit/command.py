"""Running one `litvit` command: register the models, run it, and turn a LitvitError into one line on stderr and
its exit status. Shared by `litvit ...` and the `python -m litvit.train | litvit.eval` forms torchrun starts."""

import argparse
import importlib
import os
import sys
from typing import Any, Callable, List, Optional

from .allocator import keep_freed_memory
from .errors import LitvitError, OutOfResources, ProcessLeft, another_process_left, out_of_resources, report


def run_command(prog: str, func: Callable[[argparse.Namespace], Any], args: argparse.Namespace) -> int:
    rank = int(os.environ.get("RANK", "0"))
    keep_freed_memory()  # every command's steps reuse their large buffers instead of page-faulting them in again
    try:
        importlib.import_module("litvit.models")  # registers the models with timm (imports torch and timm)
        return int(func(args) or 0)
    except LitvitError as e:
        return report(prog, e, rank)
    except RuntimeError as e:  # out of memory (a loader worker killed, an allocation refused); a torchrun peer gone
        ran_out = out_of_resources(e)
        if ran_out is not None:
            return report(prog, OutOfResources(f"{ran_out[0]}: run again with {ran_out[1]}"), rank)
        left = another_process_left(e) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None
        if left is not None:
            return report(prog, ProcessLeft(left), rank)
        raise
    except KeyboardInterrupt:
        if rank == 0:
            hint = getattr(args, "interrupt_hint", "")
            print(f"\n{prog}: interrupted{'; ' + hint if hint else ''}", file=sys.stderr)
        return 130


def add_command(subparsers: Any, name: str, help: str, description: str, **kwargs: Any) -> argparse.ArgumentParser:
    """`litvit NAME`: a sub-parser whose description keeps its line breaks (every command's is written that way)."""
    return subparsers.add_parser(
        name, help=help, description=description, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs
    )


def main_of(
    prog: str, description: str, add_arguments: Callable[[argparse.ArgumentParser], None], argv: Optional[List[str]]
) -> int:
    """A command run on its own (`python -m litvit.train ...`, the form torchrun starts): parse, then run."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_command(prog, args.func, args)
