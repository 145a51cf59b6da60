"""The one way `litvit.viz` looks inside a model: temporary forward hooks.

Every tool in this package reads the tensors it needs (a DTM's offsets, a HiLo layer's branch outputs, an
attention layer's input) through `capture`, so no layer carries visualisation code: a model that is not being
looked at runs exactly as before, at the same speed, and at every input size the model accepts.
"""

import contextlib
from typing import Dict, Iterator, List, Mapping

import torch
from torch import nn

__all__ = ["capture"]

_WHAT = ("input", "output")


@contextlib.contextmanager
def capture(modules: Mapping[str, nn.Module], what: str = "output") -> Iterator[Dict[str, List[torch.Tensor]]]:
    """Record the first positional input or the output of each named module for as long as the block runs.

    Usage::

        dtms = {n: m.dconv.conv_offset for n, m in model.named_modules() if isinstance(m, DeformableTokenMerging)}
        with torch.no_grad(), capture(dtms) as seen:
            model(x)
        offsets = seen[name][0]  # one tensor per call of that module, in call order

    Args:
        modules: name -> module; the names key the returned record.
        what: "output" (the module's return value, which must be a tensor) or "input" (its first positional
            argument).

    Yields a dict name -> list of detached tensors, one per forward call made inside the block. The hooks are
    plain `register_forward_hook` handles, removed on exit even when the block raises, so the model is left with
    no hook of ours; the recorded tensors are detached, so they neither keep the graph alive nor change gradients.
    The outputs of the forward are untouched (a hook that returns None does not replace them).
    """
    if what not in _WHAT:
        raise ValueError(f"what must be one of {_WHAT}, got {what!r}")
    seen: Dict[str, List[torch.Tensor]] = {name: [] for name in modules}
    handles = []

    def hook_for(name: str):
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            value = args[0] if what == "input" else output
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"capture: the {what} of {name} is a {type(value).__name__}, not a tensor")
            seen[name].append(value.detach())

        return hook

    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(hook_for(name)))
        yield seen
    finally:
        for handle in handles:
            handle.remove()
