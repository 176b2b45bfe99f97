"""The code's shape, for docs/ARCHITECTURE.md: module sizes, the longest functions and import cycles
among the modules of runner/ and dashboards/ (lazy imports inside functions included).

    python benchmarks/shape.py [ROOT]     # ROOT defaults to this checkout

Prints a table; exits 1 when a module is over MAX_MODULE lines, a function over MAX_FUNCTION lines,
or the modules import each other in a cycle (a submodule importing its own package is not one).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGES = ("runner", "dashboards")
MAX_MODULE, MAX_FUNCTION = 450, 60


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of PACKAGES under `root`."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def functions(tree: ast.AST) -> list[tuple[str, int]]:
    """(qualified name, lines from `def` to the body's last line) of every def, nested ones included."""
    out = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((prefix + child.name, child.end_lineno - child.lineno + 1))
                walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")
            else:
                walk(child, prefix)

    walk(tree, "")
    return out


def imports(name: str, tree: ast.AST, known: set[str]) -> set[str]:
    """The modules of `known` that module `name` imports anywhere (top level or inside functions)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package(name, known) else 0)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                found.add(target)
    return found


def is_package(name: str, known: set[str]) -> bool:
    return any(other.startswith(name + ".") for other in known)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent
    found = modules(root)
    trees = {name: ast.parse(path.read_text(), str(path)) for name, path in found.items()}
    sizes = {name: len(path.read_text().splitlines()) for name, path in found.items()}
    longest = sorted(((n, f"{m}.{f}") for m, t in trees.items() for f, n in functions(t)), reverse=True)
    graph = {name: imports(name, tree, set(found)) for name, tree in trees.items()}
    loops = cycles(graph)
    print(f"{len(found)} modules, {sum(sizes.values())} lines")
    print("\nlargest modules:")
    for name, n in sorted(sizes.items(), key=lambda kv: -kv[1])[:10]:
        print(f"  {n:5d}  {name}")
    print("\nlongest functions:")
    for n, name in longest[:10]:
        print(f"  {n:5d}  {name}")
    print("\nimport cycles:", "none" if not loops else "")
    for loop in loops:
        print("  " + " <-> ".join(loop))
    over = [m for m, n in sizes.items() if n > MAX_MODULE] + [f for n, f in longest if n > MAX_FUNCTION]
    if over:
        print(f"\nover the limits ({MAX_MODULE} lines a module, {MAX_FUNCTION} a function): {', '.join(over)}")
    return 1 if over or loops else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
