"""Processes the harness starts: each in its own session, logged to a file, and always stopped.

A target may start children of its own (the router's embedded PostgreSQL, LiteLLM's workers):
they are listed before the stop signal and each is stopped by its pid afterwards if still alive.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import psutil


class Proc:
    def __init__(
        self, name: str, argv: Sequence[str], log_path: Path, env: dict[str, str | None] | None = None
    ) -> None:
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.popen = subprocess.Popen(
            list(argv),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_environment(env or {}),
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def rss_mb(self) -> float:
        return float(psutil.Process(self.pid).memory_info().rss) / 2**20

    def cpu_s(self) -> tuple[float, float]:
        """User and system CPU seconds of the process, and of it with its live children."""
        own = total = 0.0
        root = psutil.Process(self.pid)
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system
                own = own or total
        return own, total

    def children_rss_mb(self) -> float:
        total = 0.0
        for child in psutil.Process(self.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return total / 2**20

    def wait_http(self, url: str, timeout_s: float, expect: int = 200) -> None:
        """Poll `url` until it answers `expect`; fail with the log's tail if the process dies."""
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback URL
                    if resp.status == expect:
                        return
                    last = f"HTTP {resp.status}"
            except urllib.error.HTTPError as exc:
                if exc.code == expect:
                    return
                last = f"HTTP {exc.code}"
            except OSError as exc:
                last = type(exc).__name__
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready at {url} after {timeout_s:.0f} s ({last}):\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        self._log.flush()
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace_s: float = 15.0) -> None:
        try:
            children = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            children = []
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        # children that outlive their parent (a database server, workers) are stopped by pid
        for child in children:
            with contextlib.suppress(psutil.Error):
                if child.is_running():
                    child.terminate()
        _, still = psutil.wait_procs(children, timeout=grace_s)
        for child in still:
            with contextlib.suppress(psutil.Error):
                child.kill()
        self._log.close()


def _environment(changes: dict[str, str | None]) -> dict[str, str]:
    """The harness's environment with `changes` applied; a None value removes the variable."""
    env = dict(os.environ)
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


@contextlib.contextmanager
def started(name: str, argv: Sequence[str], log_path: Path, env: dict[str, str | None] | None = None) -> Iterator[Proc]:
    proc = Proc(name, argv, log_path, env)
    try:
        yield proc
    finally:
        proc.stop()


def processes_mentioning(marker: str) -> list[psutil.Process]:
    """Processes whose command line mentions `marker` (a run's own temp directory)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(marker in part for part in p.info["cmdline"] or ()):
                found.append(p)
    return found


def rss_mb_of(procs: Sequence[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total / 2**20


def stop_strays(marker: str, grace_s: float = 15.0) -> int:
    """Stop what a target left running on its own (the embedded PostgreSQL detaches from the
    router: pg_ctl daemonises it). SIGINT is PostgreSQL's fast shutdown."""
    procs = processes_mentioning(marker)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.send_signal(signal.SIGINT)
    _, still = psutil.wait_procs(procs, timeout=grace_s)
    for p in still:
        with contextlib.suppress(psutil.Error):
            p.kill()
    return len(procs)
