"""Load with wrk (the Debian package): a Lua script POSTs one fixed body; the text report is parsed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_LATENCY = re.compile(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_TOTAL = re.compile(r"^\s*(\d+) requests in", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


@dataclass
class WrkResult:
    connections: int
    duration_s: int
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    rps: float
    requests: int
    non_2xx: int
    socket_errors: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing: installing the Debian package", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True)
        if shutil.which("wrk") is None:
            subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True)
            subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit("wrk is not installed: run `sudo apt-get install -y wrk` (Debian/Ubuntu) and retry")


def post_script(path: Path, body: dict[str, Any], headers: dict[str, str] | None = None) -> Path:
    """A wrk Lua script that POSTs `body` as JSON on every request."""
    lines = [
        'wrk.method = "POST"',
        f"wrk.body = {_lua_string(orjson.dumps(body).decode())}",
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    for name, value in (headers or {}).items():
        lines.append(f"wrk.headers[{_lua_string(name)}] = {_lua_string(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def post_rotating_script(path: Path, bodies: list[dict[str, Any]], headers: dict[str, str] | None = None) -> Path:
    """A wrk Lua script that POSTs `bodies` as JSON in turn (requests formatted once, at init)."""
    lines = [
        'wrk.method = "POST"',
        'wrk.headers["Content-Type"] = "application/json"',
        *(f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in (headers or {}).items()),
        "local bodies = {",
        *(f"  {_lua_string(orjson.dumps(b).decode())}," for b in bodies),
        "}",
        "local requests, n = {}, 0",
        "init = function(args)",
        "  for i, b in ipairs(bodies) do requests[i] = wrk.format(nil, nil, nil, b) end",
        "end",
        "request = function()",
        "  n = n % #requests + 1",
        "  return requests[n]",
        "end",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def run(url: str, *, connections: int, duration_s: int, script: Path | None = None, threads: int = 1) -> WrkResult:
    argv = [ensure_wrk(), f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--latency", "--timeout", "10s"]
    if script is not None:
        argv += ["-s", str(script)]
    argv.append(url)
    # wrk stops itself after -d; the timeout only guards against a wedged target
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=duration_s + 60).stdout
    return parse(out, connections, duration_s)


def parse(text: str, connections: int, duration_s: int) -> WrkResult:
    lat = {q: float(v) * _UNITS[u] for q, v, u in _LATENCY.findall(text)}
    rps = _RPS.search(text)
    total = _TOTAL.search(text)
    non2xx = _NON_2XX.search(text)
    sock = _SOCKET_ERRORS.search(text)
    if not lat or rps is None:
        raise RuntimeError(f"could not read wrk's report:\n{text}")
    return WrkResult(
        connections=connections,
        duration_s=duration_s,
        p50_ms=lat["50"],
        p75_ms=lat["75"],
        p90_ms=lat["90"],
        p99_ms=lat["99"],
        rps=float(rps.group(1)),
        requests=int(total.group(1)) if total else 0,
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=sum(int(g) for g in sock.groups()) if sock else 0,
    )
