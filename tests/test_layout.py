"""The package's shape stays as issue 8 left it: no module over 400 lines, and no import cycle between its modules
(imports under ``if TYPE_CHECKING:`` and inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

import nerfstudio_clipsketch

PACKAGE = Path(nerfstudio_clipsketch.__file__).parent
MAX_LINES = 400


def module_names(root: Path) -> Dict[str, Path]:
    """Every module of the package rooted at ``root``, by dotted name (a package by its own name)."""
    names = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imported_modules(name: str, path: Path, modules: Dict[str, Path]) -> Set[str]:
    """The package's modules that ``name`` imports anywhere in its source (the most specific existing module)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            # A module importing its own parent package's ``__init__`` is how Python reaches any submodule: not a cycle.
            if target and target != name and not name.startswith(target + "."):
                found.add(target)
    return found


def import_cycles(root: Path) -> List[List[str]]:
    """Each import cycle among the modules under ``root``, as the list of modules around it."""
    modules = module_names(root)
    graph = {name: imported_modules(name, path, modules) for name, path in modules.items()}
    cycles, done = [], set()

    def visit(name: str, stack: List[str]) -> None:
        if name in stack:
            cycles.append(stack[stack.index(name) :] + [name])
            return
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, stack + [name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    return cycles


def test_no_module_is_over_400_lines():
    lengths = {name: len(path.read_text().splitlines()) for name, path in module_names(PACKAGE).items()}
    assert not {name: n for name, n in lengths.items() if n > MAX_LINES}


def test_no_import_cycle_in_the_package():
    assert import_cycles(PACKAGE) == []


def test_a_cycle_hidden_behind_type_checking_is_found(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from . import b\n")
    (package / "a.py").write_text("from pkg.sub.b import thing\n")
    (package / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a import other\nthing = 1\n"
    )
    (package / "c.py").write_text("import pkg.a\n")
    assert import_cycles(package) == [["pkg.a", "pkg.sub.b", "pkg.a"]]
