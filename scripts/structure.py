"""The package's structure in figures: modules and their lengths, the longest functions, the imports
between modules, those that run back up the dependency order and the circles (modules that import
each other, type-only imports included). Reads the source with ``ast``; runs none of it, so it
measures any checkout (``python scripts/structure.py /path/to/checkout``).

The order is the one the style guide names, lowest first: topology -> layers -> models -> dst ->
train -> experiments and reports -> cli (``RANKS``). Modules outside the chain (errors, config, the
typed records, data, ...) are the foundation: anyone may import them, and they import only each
other. An import from a module to one of a higher rank runs back up.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = "g2gnet"
# Module (or package) -> rank in the dependency order; a module not named is the foundation (0).
RANKS = {
    "topology": 1, "ensembles": 1,
    "layers": 2, "packed": 2, "state_compat": 2, "kernels": 2, "stats": 2, "optim": 2,
    "models": 3, "mixer": 3, "convert": 3,
    "dst": 4,
    "train": 5, "runs": 5,
    "load": 6, "bench": 6, "bench_config": 6, "epoch_speed": 6, "sweep": 6, "report": 6, "options": 6,
    "cli": 7, "__main__": 7,
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def rank(module: str) -> int:
    parts = module.split(".")[1:]  # without the package name
    return RANKS.get(parts[0], 0) if parts else 0


def imports(tree: ast.Module, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The package's modules that ``module`` imports anywhere (also inside functions)."""
    out = set()
    here = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = here[:len(here) - node.level + 1] if node.level else []
            stem = ".".join(base + ([node.module] if node.module else []))
            names = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in known else stem for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:  # a name inside a module: the module
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


def definitions(tree: ast.Module) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(qualified name, lines from ``def``/``class`` to its last line) of every function and method,
    and of every class."""
    funcs, classes = [], []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                kind = classes if isinstance(child, ast.ClassDef) else funcs
                kind.append((prefix + child.name, child.end_lineno - child.lineno + 1))
                visit(child, f"{prefix}{child.name}.")

    visit(tree, "")
    return funcs, classes


def circles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """Groups of two or more modules that reach each other through imports."""
    after: dict[str, set[str]] = {}
    for a, b in edges:
        after.setdefault(a, set()).add(b)

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in after.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    reached = {m: reach(m) for m in after}
    groups = {tuple(sorted({m} | {o for o in reached[m] if m in reached.get(o, ())})) for m in after}
    return sorted(list(g) for g in groups if len(g) > 1)


def measure(checkout: Path) -> dict:
    root = checkout
    files = sorted((checkout / PACKAGE).rglob("*.py"))
    known = {module_name(f, root) for f in files}
    modules, funcs, classes, edges = {}, [], [], set()
    for f in files:
        text = f.read_text()
        name = module_name(f, root)
        tree = ast.parse(text)
        modules[name] = text.count("\n")
        fs, cs = definitions(tree)
        funcs += [(f"{name}.{fn}", n) for fn, n in fs]
        classes += [(f"{name}.{c}", n) for c, n in cs]
        edges |= {(name, target) for target in imports(tree, name, f.name == "__init__.py", known)}
    # The package's own __init__ is its public face: it re-exports from every rank.
    back_up = sorted((a, b) for a, b in edges if a != PACKAGE and rank(a) < rank(b))
    return {"modules": modules, "functions": sorted(funcs, key=lambda x: -x[1]),
            "classes": sorted(classes, key=lambda x: -x[1]), "imports": sorted(edges),
            "back_up": back_up, "circles": circles({(a, b) for a, b in edges if a != PACKAGE})}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkout", nargs="?", default=str(Path(__file__).resolve().parent.parent))
    p.add_argument("--top", type=int, default=8, help="how many of the longest modules, functions and classes")
    args = p.parse_args(argv)
    m = measure(Path(args.checkout))
    mods = m["modules"]
    print(f"{len(mods)} modules, {sum(mods.values())} lines; {len(m['imports'])} imports between them; "
          f"{len(m['back_up'])} run back up the order; {len(m['circles'])} circles")
    print("longest modules:")
    for name, n in sorted(mods.items(), key=lambda x: -x[1])[:args.top]:
        print(f"  {n:5d}  {name}")
    print("longest functions:")
    for name, n in m["functions"][:args.top]:
        print(f"  {n:5d}  {name}")
    print("longest classes:")
    for name, n in m["classes"][:args.top]:
        print(f"  {n:5d}  {name}")
    for a, b in m["back_up"]:
        print(f"back up: {a} (rank {rank(a)}) imports {b} (rank {rank(b)})")
    for group in m["circles"]:
        print(f"circle: {', '.join(group)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
