"""Play the Azure Functions host for Microsoft's Python worker, over gRPC, on loopback.

The host listens on a gRPC port and starts the worker as a subprocess
(`python -m azure_functions_worker --host ... --port ...`); the worker connects back and opens the
bidirectional `EventStream`. Everything after that is protobuf `StreamingMessage`s, exactly what
`azure_functions_worker` 4.34.0 (`../shared/functions-worker`, README there) receives in Azure:
WorkerInitRequest, FunctionsMetadataRequest, FunctionLoadRequest, InvocationRequest. HTTP
functions on the streaming (HTTP v2) extension are reached the way the host proxies them: the
real HTTP request goes to the worker's advertised `HttpUri` with an `x-ms-invocation-id` header,
and the InvocationRequest carries the route parameters.

What the host does that the worker does not, and this driver does like the host:
- app settings reach the worker as environment variables (nothing else);
- `%NAME%` in binding metadata is resolved against those app settings, with no default: an
  unresolved name is an indexing error (the host cannot index such a function).

Nothing here is our code under test: this module only speaks the worker's protocol.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SETTING_REF = re.compile(r"%([A-Za-z0-9_.:-]+)%")


def _main_worktree_parent() -> Path | None:
    """In a `git worktree`, `.git` is a file naming the main repository's git dir; `../shared`
    is relative to the main checkout."""
    git = ROOT / ".git"
    if not git.is_file():
        return None
    line = git.read_text().strip()
    if not line.startswith("gitdir:"):
        return None
    gitdir = Path(line.split(":", 1)[1].strip())
    # <main>/.git/worktrees/<name>
    return gitdir.parents[2].parent if len(gitdir.parents) >= 3 else None


def find_worker_source() -> Path | None:
    """`../shared/functions-worker` from the repository root (FUNCTIONS_WORKER_DIR overrides)."""
    candidates: list[Path] = []
    if os.environ.get("FUNCTIONS_WORKER_DIR"):
        candidates.append(Path(os.environ["FUNCTIONS_WORKER_DIR"]))
    candidates.append(ROOT.parent / "shared" / "functions-worker")
    main_parent = _main_worktree_parent()
    if main_parent is not None:
        candidates.append(main_parent / "shared" / "functions-worker")
    for c in candidates:
        if (c / "azure_functions_worker" / "dispatcher.py").is_file():
            return c
    return None


def prepare_worker(source: Path, dest: Path) -> Path:
    """A copy of the worker that imports. The snapshot keeps its compiled protos only as
    `protos/**/__pycache__/*_pb2*.cpython-3XX.pyc` (the generated `.py` files are git-ignored
    there), and Python imports a sourceless module only from a `.pyc` beside the package's
    `__init__`: place each one there. The worker's code is not changed."""
    target = dest / "functions-worker"
    if target.exists():
        return target
    shutil.copytree(source, target)
    for dirpath, _dirnames, _files in os.walk(target):
        os.chmod(dirpath, 0o700)  # the source may be read-only
    tag = sys.implementation.cache_tag  # cpython-311
    for pyc in (target / "azure_functions_worker" / "protos").rglob(f"*_pb2*.{tag}.pyc"):
        module = pyc.name.removesuffix(f".{tag}.pyc")
        package = pyc.parent.parent
        if not (package / f"{module}.py").exists():
            shutil.copyfile(pyc, package / f"{module}.pyc")
    return target


def load_protos(worker_dir: Path) -> Any:
    if str(worker_dir) not in sys.path:
        sys.path.insert(0, str(worker_dir))
    from azure_functions_worker import protos

    return protos


def sample_settings() -> dict[str, str]:
    """The app settings `local.settings.sample.json` gives the Functions host."""
    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    return {str(k): str(v) for k, v in values.items()}


def worker_environment(app_settings: Mapping[str, str], worker_dir: Path) -> dict[str, str]:
    """What the worker process gets: a clean environment plus the app settings (the host passes
    app settings as environment variables and nothing of the test runner's own)."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    env.update(app_settings)
    env["PYTHONPATH"] = os.pathsep.join([str(worker_dir), str(ROOT)])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


class HostError(AssertionError):
    pass


@dataclass
class HttpCall:
    status: int
    headers: dict[str, str]
    body: bytes
    invocation: Any  # the InvocationResponse

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FunctionInfo:
    name: str
    function_id: str
    metadata: Any
    raw_bindings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def trigger(self) -> dict[str, Any]:
        return next(b for b in self.raw_bindings if b["type"].endswith("Trigger"))


class _Channel:
    """The host's end of EventStream: a queue out to the worker, and every message from it."""

    def __init__(self, protos: Any) -> None:
        self.protos = protos
        self.outbound: queue.Queue[Any] = queue.Queue()
        self.inbound: queue.Queue[Any] = queue.Queue()

    def EventStream(self, request_iterator: Iterator[Any], context: Any) -> Iterator[Any]:
        def read() -> None:
            try:
                for msg in request_iterator:
                    self.inbound.put(msg)
            except Exception as exc:
                self.inbound.put(exc)
            self.inbound.put(None)

        threading.Thread(target=read, name="host-reader", daemon=True).start()
        while True:
            msg = self.outbound.get()
            if msg is None:
                return
            yield msg


class WorkerHost:
    """One worker process, driven like the Functions host drives it.

    with WorkerHost(worker_dir, app_settings, log_path) as host:
        init = host.init()                       # WorkerInitResponse
        functions = host.index_and_load()        # name -> FunctionInfo
        call = host.http("health_live", "GET", "/health/live")
    """

    def __init__(self, worker_dir: Path, app_settings: Mapping[str, str], log_path: Path, app_dir: Path = ROOT) -> None:
        self.worker_dir = worker_dir
        self.app_dir = app_dir
        self.protos = load_protos(worker_dir)
        self.app_settings = dict(app_settings)
        self.log_path = log_path
        self.request_id = "host-" + uuid.uuid4().hex[:8]
        self.logs: list[Any] = []  # RpcLog messages, in arrival order
        self.functions: dict[str, FunctionInfo] = {}
        self.http_uri: str | None = None
        self._channel = _Channel(self.protos)
        self._responses: dict[str, queue.Queue[Any]] = {}
        self._lock = threading.Lock()
        self._server: Any = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    # -- process -----------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> WorkerHost:
        import grpc

        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4),
            options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)],
        )
        self.protos.add_FunctionRpcServicer_to_server(self._channel, self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        self._log_file = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "azure_functions_worker",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workerId",
                "worker-" + uuid.uuid4().hex[:8],
                "--requestId",
                self.request_id,
                "--grpcMaxMessageLength",
                "2147483647",
            ],
            cwd=self.app_dir,
            env=worker_environment(self.app_settings, self.worker_dir),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        threading.Thread(target=self._route, name="host-router", daemon=True).start()
        first = self._wait("start_stream", timeout)
        if not first.start_stream.worker_id:
            raise HostError("the worker's first message is not StartStream")
        return self

    def stop(self) -> None:
        self._channel.outbound.put(None)
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        if self._server is not None:
            self._server.stop(grace=None)
        if self._log_file is not None:
            self._log_file.close()

    def __enter__(self) -> WorkerHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def worker_output(self) -> str:
        self._log_file.flush()
        return self.log_path.read_text(errors="replace")

    # -- messages ----------------------------------------------------------------------------
    def _route(self) -> None:
        while True:
            msg = self._channel.inbound.get()
            if msg is None or isinstance(msg, Exception):
                self._queue("closed").put(msg)
                return
            kind = msg.WhichOneof("content")
            if kind == "rpc_log":
                self.logs.append(msg.rpc_log)
                continue
            key = kind
            if kind == "invocation_response":
                key = "invocation:" + msg.invocation_response.invocation_id
            elif kind == "function_load_response":
                key = "load:" + msg.function_load_response.function_id
            self._queue(key).put(msg)

    def _queue(self, key: str) -> queue.Queue[Any]:
        with self._lock:
            return self._responses.setdefault(key, queue.Queue())

    def _wait(self, key: str, timeout: float) -> Any:
        try:
            msg = self._queue(key).get(timeout=timeout)
        except queue.Empty:
            raise HostError(
                f"no {key} from the worker within {timeout:.0f} s; worker output:\n{self.worker_output()[-3000:]}"
            ) from None
        return msg

    def send(self, **content: Any) -> None:
        self._channel.outbound.put(self.protos.StreamingMessage(request_id=self.request_id, **content))

    # -- the handshake -------------------------------------------------------------------------
    def init(self, timeout: float = 60.0) -> Any:
        """WorkerInitRequest as the host sends it; returns the WorkerInitResponse."""
        self.send(
            worker_init_request=self.protos.WorkerInitRequest(
                host_version="4.1040.0",
                function_app_directory=str(self.app_dir),
                worker_directory=str(self.worker_dir),
                capabilities={"RpcHttpBodyOnly": "true", "RawHttpBodyBytes": "true"},
            )
        )
        resp = self._wait("worker_init_response", timeout).worker_init_response
        self.http_uri = resp.capabilities.get("HttpUri")
        return resp

    def metadata(self, timeout: float = 60.0) -> Any:
        self.send(
            functions_metadata_request=self.protos.FunctionsMetadataRequest(function_app_directory=str(self.app_dir))
        )
        return self._wait("function_metadata_response", timeout).function_metadata_response

    def index_and_load(self, timeout: float = 60.0) -> dict[str, FunctionInfo]:
        """FunctionsMetadataRequest, then the host's own step (resolve `%NAME%` in every
        binding against the app settings; a missing name fails indexing), then one
        FunctionLoadRequest per function."""
        md = self.metadata(timeout)
        status = self.protos.StatusResult.Status.Name(md.result.status)
        if status != "Success":
            raise HostError(f"FunctionsMetadataRequest: {status}: {md.result.exception.message}")
        unresolved: list[str] = []
        for m in md.function_metadata_results:
            raw = [json.loads(b) for b in m.raw_bindings]
            for binding in raw:
                for key, value in binding.items():
                    if isinstance(value, str):
                        for name in SETTING_REF.findall(value):
                            if not self.app_settings.get(name):
                                unresolved.append(f"{m.name}.{binding.get('name')}.{key} -> %{name}%")
            self.functions[m.name] = FunctionInfo(m.name, m.function_id, m, raw)
        if unresolved:
            raise HostError(
                "the host cannot index these bindings: their %SETTING% is not an app setting: " + ", ".join(unresolved)
            )
        for info in self.functions.values():
            self.send(
                function_load_request=self.protos.FunctionLoadRequest(
                    function_id=info.function_id, metadata=info.metadata
                )
            )
        for info in self.functions.values():
            lr = self._wait("load:" + info.function_id, timeout).function_load_response
            if self.protos.StatusResult.Status.Name(lr.result.status) != "Success":
                raise HostError(f"FunctionLoadRequest {info.name}: {lr.result.exception.message}")
        return self.functions

    # -- invocations -------------------------------------------------------------------------------
    def invoke(
        self,
        function: str,
        input_data: list[Any],
        trigger_metadata: Mapping[str, Any] | None = None,
        timeout: float = 120.0,
    ) -> Any:
        """One InvocationRequest; returns the InvocationResponse."""
        invocation_id = self.start_invocation(function, input_data, trigger_metadata)
        return self.invocation_result(invocation_id, timeout)

    def start_invocation(
        self, function: str, input_data: list[Any], trigger_metadata: Mapping[str, Any] | None = None
    ) -> str:
        invocation_id = str(uuid.uuid4())
        self.send(
            invocation_request=self.protos.InvocationRequest(
                invocation_id=invocation_id,
                function_id=self.functions[function].function_id,
                input_data=input_data,
                trigger_metadata=dict(trigger_metadata or {}),
            )
        )
        return invocation_id

    def invocation_result(self, invocation_id: str, timeout: float = 120.0) -> Any:
        return self._wait("invocation:" + invocation_id, timeout).invocation_response

    def status(self, invocation: Any) -> str:
        return str(self.protos.StatusResult.Status.Name(invocation.result.status))

    def http_invocation(
        self,
        function: str,
        method: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        route_params: Mapping[str, str] | None = None,
    ) -> str:
        """The InvocationRequest the host sends for an HTTP v2 function (the worker advertised
        HttpUri: the body travels over HTTP, the route parameters over gRPC)."""
        trigger = self.functions[function].trigger
        rpc = self.protos.RpcHttp(
            method=method,
            url="http://localhost" + path,
            headers=dict(headers or {}),
            params=dict(route_params or {}),
        )
        return self.start_invocation(
            function, [self.protos.ParameterBinding(name=trigger["name"], data=self.protos.TypedData(http=rpc))]
        )

    def http(
        self,
        function: str,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        route_params: Mapping[str, str] | None = None,
        timeout: float = 120.0,
    ) -> HttpCall:
        """One HTTP call as the host proxies it: InvocationRequest over gRPC and the HTTP request
        to the worker's HttpUri with x-ms-invocation-id."""
        import httpx

        if self.http_uri is None:
            raise HostError("the worker advertised no HttpUri")
        invocation_id = self.http_invocation(function, method, path, headers, route_params)
        with httpx.Client(timeout=timeout) as client:
            r = client.request(
                method,
                self.http_uri + path,
                content=body,
                headers={**(headers or {}), "x-ms-invocation-id": invocation_id},
            )
        inv = self.invocation_result(invocation_id, timeout)
        return HttpCall(r.status_code, dict(r.headers), r.content, inv)

    # -- the payloads the host sends for non-HTTP triggers -------------------------------------------
    def timer_input(self, arg_name: str, past_due: bool) -> list[Any]:
        """The timer trigger's TypedData: JSON of the host's TimerInfo."""
        info = {
            "Schedule": {"AdjustForDST": True},
            "ScheduleStatus": {
                "Last": "2026-01-01T00:00:00+00:00",
                "Next": "2026-01-01T00:05:00+00:00",
                "LastUpdated": "2026-01-01T00:00:00+00:00",
            },
            "IsPastDue": past_due,
        }
        return [self.protos.ParameterBinding(name=arg_name, data=self.protos.TypedData(json=json.dumps(info)))]

    def service_bus_input(
        self,
        arg_name: str,
        body: bytes,
        message_id: str,
        delivery_count: int = 1,
        application_properties: Mapping[str, Any] | None = None,
    ) -> tuple[list[Any], dict[str, Any]]:
        """The Service Bus trigger's payload and trigger metadata as the host's Service Bus
        extension (5.x) sends them for one message: the body as bytes; strings as `string`;
        numbers, dictionaries and dates as `json` (the host's RpcMessageConversionExtensions; this
        worker cannot even decode a TypedData `int`: "unsupported TypeData kind")."""
        td = self.protos.TypedData
        props = dict(application_properties or {})
        metadata = {
            "MessageId": td(string=message_id),
            "DeliveryCount": td(json=json.dumps(delivery_count)),
            "SequenceNumber": td(json="1"),
            "ContentType": td(string="application/json"),
            "CorrelationId": td(string=message_id),
            "LockToken": td(string=str(uuid.uuid4())),
            "EnqueuedTimeUtc": td(json=json.dumps("2026-01-01T00:00:00Z")),
            "ExpiresAtUtc": td(json=json.dumps("2026-01-15T00:00:00Z")),
            "ApplicationProperties": td(json=json.dumps(props)),
            "UserProperties": td(json=json.dumps(props)),
            "sys": td(json=json.dumps({"MethodName": "route_job_message", "UtcNow": "2026-01-01T00:00:01Z"})),
        }
        return [self.protos.ParameterBinding(name=arg_name, data=td(bytes=body))], metadata

    def log_messages(self) -> list[str]:
        return [log.message for log in self.logs]
