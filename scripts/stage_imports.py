"""How many of the project's modules each stage asset imports, directly and transitively.

    python scripts/stage_imports.py [--lines]

Read from the source, not by importing it: an import counts when it runs at import time (at
module level, outside functions and `if TYPE_CHECKING:`), as does the `__init__` of every
package on the way to a module. Deferred imports inside functions are what a module pays only
when it uses them, so they are left out. `--lines` also prints lines per non-test source file
(median, p90, max), the other number issue 10 asked to measure.
"""

from __future__ import annotations

import argparse
import ast
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The project's packages and where their sources live (pyproject.toml's package-dir).
PACKAGES = {
    "codeio_dagster": ROOT / "codeio_dagster",
    "codeio_dagster.assets": ROOT / "assets",
    "codeio_dagster.sensors": ROOT / "sensors",
    "codeio_dagster.sandbox": ROOT / "sandbox",
}


def module_file(name: str) -> Path | None:
    """The source file of a project module, or None when it is not one."""
    for package, folder in sorted(PACKAGES.items(), key=lambda kv: -len(kv[0])):
        if name == package:
            return folder / "__init__.py"
        if name.startswith(package + "."):
            rest = name[len(package) + 1 :].split(".")
            path = folder.joinpath(*rest)
            if path.with_suffix(".py").is_file():
                return path.with_suffix(".py")
            if (path / "__init__.py").is_file():
                return path / "__init__.py"
            return None
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _top_level_imports(tree: ast.Module, name: str, is_package: bool) -> set[str]:
    found: set[str] = set()
    package = name if is_package else name.rpartition(".")[0]

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parent = ".".join(parts[: len(parts) - node.level + 1])
                    base = f"{parent}.{base}" if base else parent
                found.add(base)
                # `from pkg import mod` imports the module pkg.mod when there is one.
                found.update(f"{base}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If) and not _is_type_checking(node):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)

    visit(tree.body)
    return found


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def imports_of(name: str) -> set[str]:
    """The project modules `name` imports when it is imported (packages' __init__ included)."""
    path = module_file(name)
    if path is None:
        return set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for imported in _top_level_imports(tree, name, path.name == "__init__.py"):
        out.update(m for m in _with_parents(imported) if m != name and module_file(m))
    return out


def closure(name: str) -> set[str]:
    seen: set[str] = set()
    todo = [name, *_with_parents(name)[:-1]]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo.extend(imports_of(current) - seen)
    return seen - {name}


def stage_assets() -> list[str]:
    return sorted(
        f"codeio_dagster.assets.{p.stem}"
        for p in PACKAGES["codeio_dagster.assets"].glob("*.py")
        if p.stem != "__init__"
    )


def source_files() -> list[Path]:
    """Non-test source files: the four packages (not tests, benchmarks, examples, scripts)."""
    return sorted(f for folder in PACKAGES.values() for f in folder.rglob("*.py"))


def line_stats(files: list[Path]) -> tuple[int, float, float, int]:
    lines = sorted(len(f.read_text(encoding="utf-8").splitlines()) for f in files)
    p90 = statistics.quantiles(lines, n=10, method="inclusive")[-1]
    return len(lines), statistics.median(lines), p90, lines[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", action="store_true", help="also print lines per file")
    args = parser.parse_args()
    print(f"{'stage asset':<24} {'direct':>6} {'transitive':>10}")
    for name in stage_assets():
        direct = {m for m in imports_of(name) if m not in _with_parents(name)}
        print(f"{name.rsplit('.', 1)[-1]:<24} {len(direct):>6} {len(closure(name)):>10}")
    if args.lines:
        files = source_files()
        n, median, p90, top = line_stats(files)
        print(
            f"lines per non-test source file: {n} files, median {median:g}, p90 {p90:.0f}, max {top}"
        )
        for f in sorted(files, key=lambda f: -len(f.read_text(encoding="utf-8").splitlines()))[:10]:
            print(f"  {len(f.read_text(encoding='utf-8').splitlines()):>5} {f.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
