"""First-invocation cost of function_app.py on Microsoft's Python worker (issue 14).

    .venv/bin/python -m bench.worker_startup [--runs 3]

Starts the worker over gRPC (tests/worker/host.py) with the sample's app settings, times the
WorkerInitRequest (indexing), the FunctionLoadRequests, and the first and second GET
/health/ready (the first builds the app context). Then the same with a copy of function_app.py
that starts building the context at import, i.e. during the worker's init indexing (the warm-up
proposed in the issue-14 report), to show what the first request saves.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from tests.worker.conftest import light_settings, local_catalog
from tests.worker.host import ROOT, WorkerHost, find_worker_source, prepare_worker

WARM_AT_IMPORT = """

def _warm_on_worker_start() -> None:
    import asyncio
    import sys

    if "azure_functions_worker" not in sys.modules:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    from shared.composition.process import get_services

    _WARMUP.append(loop.create_task(get_services()))


_WARMUP: list[object] = []
_warm_on_worker_start()
"""


def one_run(worker_dir: Path, app_dir: Path, tmp: Path) -> tuple[float, float, float, float]:
    tmp.mkdir(parents=True)
    settings = light_settings(tmp, local_catalog("http://127.0.0.1:9/v1", tmp / "catalog.yaml"))
    with WorkerHost(worker_dir, settings, tmp / "worker.log", app_dir=app_dir) as host:
        t0 = time.perf_counter()
        host.init()
        t_init = time.perf_counter() - t0
        t0 = time.perf_counter()
        host.index_and_load()
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        host.http("health_ready", "GET", "/health/ready")
        t_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        host.http("health_ready", "GET", "/health/ready")
        t_second = time.perf_counter() - t0
    return t_init, t_load, t_first, t_second


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    source = find_worker_source()
    if source is None:
        raise SystemExit("Microsoft's Python worker is not at ../shared/functions-worker")
    with tempfile.TemporaryDirectory() as d:
        base = Path(d)
        worker_dir = prepare_worker(source, base)
        warm = base / "warm-app"
        warm.mkdir()
        (warm / "function_app.py").write_text((ROOT / "function_app.py").read_text() + WARM_AT_IMPORT)
        shutil.copy(ROOT / "host.json", warm / "host.json")
        for label, app_dir in (("as shipped", ROOT), ("warm at import", warm)):
            for i in range(args.runs):
                t = one_run(worker_dir, app_dir, base / f"{label.replace(' ', '-')}-{i}")
                print(
                    f"{label:15s} init {t[0]:5.2f} s  load {t[1]:5.2f} s  "
                    f"first /health/ready {t[2]:5.2f} s  second {t[3]:6.3f} s"
                )


if __name__ == "__main__":
    main()
