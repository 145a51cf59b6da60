"""The package's import graph has no cycle, lazy imports (inside functions) included, and the model files never
import each other (timm's rule: one file per architecture)."""

import ast
from pathlib import Path
from typing import Dict, List, Set

SRC = Path(__file__).parents[1] / "src"
PKG = SRC / "litvit"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, known: Set[str] = frozenset()) -> Set[str]:
    """Every litvit module named by an import statement anywhere in the file (function bodies too). `from . import
    models` names the module `models`, not the package it is taken from (which Python imports first anyway)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "litvit"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "litvit":
                continue
            modules = {f"{target}.{a.name}" for a in node.names} & set(known)
            found |= modules
            if len(modules) < len(node.names):  # some names are attributes of `target`
                found.add(target)
    return found


def _node(module: str) -> str:
    """The unit of the graph: a subpackage (litvit.train, ...) or a top-level module (litvit.checkpoint, ...)."""
    parts = module.split(".")
    return ".".join(parts[:2])


def _graph() -> Dict[str, Set[str]]:
    known = {_module_name(p) for p in PKG.rglob("*.py")}
    graph: Dict[str, Set[str]] = {}
    for path in PKG.rglob("*.py"):
        src = _node(_module_name(path))
        targets = {_node(m) for m in _imports(path, known) if m in known}
        graph.setdefault(src, set()).update(t for t in targets if t != src)
    return graph


def _cycle(graph: Dict[str, Set[str]]) -> List[str]:
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(n: str) -> List[str]:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return []

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return []


def test_no_import_cycle_between_subpackages_lazy_or_not():
    graph = _graph()
    assert "litvit.train" in graph and "litvit.models" in graph
    assert _cycle(graph) == [], " -> ".join(_cycle(graph))


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []


def test_model_files_do_not_import_each_other():
    families = {"litv2", "lit", "lit_ti"}
    for family in families:
        imported = {m.rsplit(".", 1)[-1] for m in _imports(PKG / "models" / f"{family}.py")}
        assert not (imported & (families - {family})), (family, imported & families)


def test_checkpoint_files_know_nothing_of_models():
    """Reading and writing files is separate from fitting weights to a model (litvit.models does that)."""
    assert {_node(m) for m in _imports(PKG / "checkpoint.py")} <= {"litvit.errors"}


def test_shared_value_parsers():
    import pytest

    from litvit.options import parse_key_value, parse_size, to_2tuple

    assert parse_key_value("alpha=0.5") == ("alpha", 0.5)
    assert parse_key_value("local_ws=[0, 0, 4, 1]") == ("local_ws", [0, 0, 4, 1])
    assert to_2tuple(224) == (224, 224) and to_2tuple([224, 256]) == (224, 256)
    assert parse_size("14") == (14, 14) and parse_size("20x30") == (20, 30)
    for bad in ("12", "x", (1, 2, 3), True):
        with pytest.raises(ValueError, match="must be an int or"):
            to_2tuple(bad)
    for bad in ("0", "ax3", "1x2x3"):
        with pytest.raises(ValueError, match="bad size"):
            parse_size(bad)
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        parse_key_value("alpha")
