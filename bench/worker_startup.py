"""First-invocation cost of function_app.py on Microsoft's Python worker (issue 14).

    .venv/bin/python -m bench.worker_startup [--runs 3]

Starts the worker over gRPC (tests/worker/host.py) with the sample's app settings, times the
WorkerInitRequest (indexing), the FunctionLoadRequests, and the first and second GET
/health/ready. function_app.py as shipped starts building the services while the worker indexes
it (shared/composition/process.py warm_on_worker_start); a copy without that call shows what the
first request would pay otherwise.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from tests.worker.conftest import light_settings, local_catalog
from tests.worker.host import ROOT, WorkerHost, find_worker_source, prepare_worker

WARM_CALL = "\nwarm_on_worker_start()\n"


def one_run(worker_dir: Path, app_dir: Path, tmp: Path, pause_s: float = 0.0) -> tuple[float, float, float, float]:
    tmp.mkdir(parents=True)
    settings = light_settings(tmp, local_catalog("http://127.0.0.1:9/v1", tmp / "catalog.yaml"))
    with WorkerHost(worker_dir, settings, tmp / "worker.log", app_dir=app_dir) as host:
        t0 = time.perf_counter()
        host.init()
        t_init = time.perf_counter() - t0
        t0 = time.perf_counter()
        host.index_and_load()
        t_load = time.perf_counter() - t0
        time.sleep(pause_s)  # the host's traffic rarely arrives the moment the functions are loaded
        t0 = time.perf_counter()
        first = host.http("health_ready", "GET", "/health/ready")
        t_first = time.perf_counter() - t0
        if first.status >= 500:
            errors = [m for m in host.log_messages() if "Error" in m or "Traceback" in m]
            raise RuntimeError(f"/health/ready answered {first.status}: {errors[-3:]}")
        t0 = time.perf_counter()
        host.http("health_ready", "GET", "/health/ready")
        t_second = time.perf_counter() - t0
    return t_init, t_load, t_first, t_second


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between loading and the first request")
    args = parser.parse_args()
    source = find_worker_source()
    if source is None:
        raise SystemExit("Microsoft's Python worker is not at ../shared/functions-worker")
    with tempfile.TemporaryDirectory() as d:
        base = Path(d)
        worker_dir = prepare_worker(source, base)
        cold = base / "cold-app"
        cold.mkdir()
        shipped = (ROOT / "function_app.py").read_text()
        if WARM_CALL not in shipped:
            raise SystemExit("function_app.py no longer calls warm_on_worker_start() at its end")
        (cold / "function_app.py").write_text(shipped.replace(WARM_CALL, "\n"))
        shutil.copy(ROOT / "host.json", cold / "host.json")
        (cold / "shared").symlink_to(ROOT / "shared")  # the settings' relative paths resolve from the app
        for label, app_dir in (("as shipped", ROOT), ("not warmed", cold)):
            for i in range(args.runs):
                t = one_run(worker_dir, app_dir, base / f"{label.replace(' ', '-')}-{i}", args.pause)
                print(
                    f"{label:15s} init {t[0]:5.2f} s  load {t[1]:5.2f} s  "
                    f"first /health/ready {t[2]:5.2f} s  second {t[3]:6.3f} s"
                )


if __name__ == "__main__":
    main()
