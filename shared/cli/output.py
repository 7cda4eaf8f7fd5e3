"""What every command shares: JSON output and file arguments."""

from __future__ import annotations

import glob
import json
from pathlib import Path
from typing import Any


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def expand_paths(patterns: list[str]) -> list[Path]:
    paths: list[Path] = []
    for pat in patterns:
        hits = sorted(glob.glob(pat))
        paths.extend(Path(h) for h in (hits or [pat]))
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise SystemExit(f"not found: {', '.join(missing)}")
    return paths
