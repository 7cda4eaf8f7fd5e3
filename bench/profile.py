"""Sample the router under load with py-spy and summarise where its time goes.

py-spy's raw output (collapsed stacks, `frame;frame;... count`) is kept under bench/results/
(git-ignored; any flame-graph tool draws it) and summarised by self and inclusive time.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def py_spy() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


def record(pid: int, out: Path, duration_s: int, rate: int = 250) -> subprocess.Popen[bytes] | None:
    exe = py_spy()
    if exe is None:
        print("py-spy is not installed (pip install py-spy): no profile", flush=True)
        return None
    argv = [exe, "record", "--pid", str(pid), "--duration", str(duration_s), "--rate", str(rate)]
    argv += ["--format", "raw", "--output", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _label(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{m.group('func')} ({path})"


def _module(label: str) -> str:
    m = re.search(r"\(([^)]+)\)$", label)
    if not m:
        return "?"
    path = m.group(1)
    parts = path.split("/")
    if parts[0] == "shared":
        return "/".join(parts[:2]).removesuffix(".py")
    return parts[0].removesuffix(".py")


def summarise(raw: Path, top: int = 25) -> dict[str, Any]:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    by_module: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_label(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        self_time[frames[-1]] += count
        by_module[_module(frames[-1])] += count
        for f in set(frames):
            inclusive[f] += count

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100.0 * v / total, 1)) for k, v in counter.most_common(top)] if total else []

    return {
        "samples": total,
        "self_pct": share(self_time),
        "inclusive_pct": share(inclusive),
        "self_by_module_pct": share(by_module),
    }


def print_summary(summary: dict[str, Any], top: int = 15) -> None:
    print(f"\nprofile: {summary['samples']} samples")
    print("  self time by module:")
    for name, pct in summary["self_by_module_pct"][:top]:
        print(f"    {pct:5.1f}%  {name}")
    print("  self time by function:")
    for name, pct in summary["self_pct"][:top]:
        print(f"    {pct:5.1f}%  {name}")
