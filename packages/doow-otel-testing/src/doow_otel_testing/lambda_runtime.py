"""A loopback AWS Lambda Runtime API, to run a handler under the real `awslambdaric`.

`LambdaRuntime("app.handler", task_root=...)` serves the Runtime API on 127.0.0.1
and starts the runtime interface client (`python -m awslambdaric app.handler`) as a
subprocess pointed at it; `invoke(event)` hands it one event and returns what it
posted back. Like Lambda, the runtime process is frozen (SIGSTOP) the instant it
posts its response or error and thawed (SIGCONT) when the next event is handed
over: work left running after the handler returned makes no progress in between.

    with LambdaRuntime("app.handler", task_root="examples/lambda") as runtime:
        result = runtime.invoke({"user": "u_1"}, timeout=3.0)
        assert result.ok and result.in_time

With `kill_at_deadline=True`, a handler still running at its deadline is timed out as
Lambda does it: the runtime process is killed (SIGKILL: nothing of it runs on), the
invocation answers `Sandbox.Timedout`, and the next event starts a new runtime process in
the same environment (the same /tmp, the same variables), which initialises again.

With `extensions=[path, ...]`, each is started first as a Lambda external extension
(Extensions API: register, event/next with INVOKE and SHUTDOWN; Telemetry API:
platform.runtimeDone to subscribers), and the runtime only once they have all
registered. An invocation ends when the runtime has posted and every extension has
asked for its next event; each extension is frozen as it asks, so what it had not
finished by then makes no progress either. `close()` sends SHUTDOWN and waits for the
extensions to exit.

POSIX only (the freeze is a signal).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["InitError", "Invocation", "LambdaRuntime"]

API = "/2018-06-01/runtime"
EXTENSION_API = "/2020-01-01/extension"
TELEMETRY_API = "/2022-07-01/telemetry"
SHUTDOWN_SECONDS = 2.0  # what Lambda gives extensions to finish on SHUTDOWN
FUNCTION_ARN = "arn:aws:lambda:us-east-1:000000000000:function:{name}"


@dataclass(frozen=True)
class Invocation:
    """What the runtime posted for one event."""

    request_id: str
    ok: bool  # posted to /response (False: to /error)
    body: Any  # the posted JSON
    deadline_ms: int  # epoch milliseconds, as sent in Lambda-Runtime-Deadline-Ms
    posted_ms: int  # epoch milliseconds when the post arrived
    error_type: str | None = None
    ended_ms: int | None = None  # with extensions: when the last one asked for its next event

    @property
    def in_time(self) -> bool:
        """Posted before the deadline (Lambda would otherwise have timed the invocation out)."""
        return self.posted_ms <= self.deadline_ms


class InitError(RuntimeError):
    """The runtime reported an init error (`/runtime/init/error`) or exited."""


@dataclass(frozen=True)
class _Event:
    request_id: str
    body: bytes
    deadline_ms: int


class _Extension:
    """One external extension process and what the Extensions API knows of it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.process: subprocess.Popen[bytes] | None = None
        self.id = str(uuid.uuid4())
        self.registered = threading.Event()
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.waiting = threading.Event()  # in event/next with nothing to hand: done
        self.telemetry: str | None = None  # subscribed destination URI
        self.frozen = False
        self.lock = threading.Lock()  # freezing and handing over events, one at a time

    def hand(self, event: dict[str, Any]) -> None:
        """Queue its next event and let it run (Lambda thaws the environment to deliver it)."""
        with self.lock:
            self.waiting.clear()
            self.events.put(event)
            self._thaw()

    def asks(self, freeze: bool) -> None:
        """It called event/next, so it is done with its last event: unless the next one is
        queued already, it waits (frozen, as Lambda freezes an idle environment)."""
        with self.lock:
            if self.events.empty():
                self.waiting.set()
                if freeze:
                    self._freeze()

    def takes(self) -> dict[str, Any] | None:
        """The next event, once there is one (None when the process is gone)."""
        while True:
            try:
                event = self.events.get(timeout=0.2)
            except queue.Empty:
                if self.process is None or self.process.poll() is not None:
                    return None
                continue
            with self.lock:
                self.waiting.clear()  # busy with it until it asks again
            return event

    def thaw(self) -> None:
        with self.lock:
            self._thaw()

    def _freeze(self) -> None:
        if self.process is not None and self.process.poll() is None and not self.frozen:
            os.kill(self.process.pid, signal.SIGSTOP)
            self.frozen = True
            _wait_stopped(self.process.pid)

    def _thaw(self) -> None:
        if self.frozen and self.process is not None:
            self.frozen = False
            os.kill(self.process.pid, signal.SIGCONT)


class LambdaRuntime:
    """The Runtime API on loopback plus the real runtime client running `handler`."""

    def __init__(
        self,
        handler: str,
        *,
        task_root: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        function_name: str = "doow-example",
        freeze: bool = True,
        python: str = sys.executable,
        extensions: Sequence[str | os.PathLike[str]] = (),
        kill_at_deadline: bool = False,
    ) -> None:
        self.handler = handler
        self.task_root = Path(task_root).resolve()
        self.env = dict(env or {})
        self.function_name = function_name
        self.freeze = freeze and hasattr(signal, "SIGSTOP")
        self.python = python
        self.kill_at_deadline = kill_at_deadline
        self.timeouts = 0  # invocations timed out (their runtime killed)
        self.init_error: Any = None
        self.process: subprocess.Popen[bytes] | None = None
        self.ready = threading.Event()  # set when the runtime, initialised, asks for an event
        self._events: queue.Queue[_Event] = queue.Queue()
        self._results: dict[str, Invocation] = {}
        self._deadlines: dict[str, int] = {}  # handed-out events awaiting an answer
        self._changed = threading.Condition()
        self._frozen = False
        self._closing = False
        self.extensions = [_Extension(Path(path)) for path in extensions]
        self._server = _RuntimeAPIServer(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},  # a stop waits up to this long (default 0.5 s)
            name="lambda-runtime-api",
            daemon=True,
        )
        handle, name = tempfile.mkstemp(prefix="lambda-runtime-", suffix=".log")
        os.close(handle)
        self._log = Path(name)

    @property
    def address(self) -> str:
        """`host:port`, the value of `AWS_LAMBDA_RUNTIME_API`."""
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> LambdaRuntime:
        self._thread.start()
        env = self._environment()
        with open(self._log, "wb") as log:
            for extension in self.extensions:  # Lambda starts extensions first
                extension.process = subprocess.Popen(
                    [str(extension.path)],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            self._await_registrations()
        self._spawn_runtime()
        return self

    def _spawn_runtime(self) -> None:
        with open(self._log, "ab") as log:
            self.process = subprocess.Popen(
                [self.python, "-m", "awslambdaric", self.handler],
                cwd=self.task_root,
                env=self._environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _await_registrations(self, limit: float = 30.0) -> None:
        end = time.monotonic() + limit
        for extension in self.extensions:
            while not extension.registered.wait(0.05):
                assert extension.process is not None
                if extension.process.poll() is not None or time.monotonic() > end:
                    raise InitError(
                        f"extension {extension.path.name} did not register:\n{self.log()}"
                    )

    def _environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "AWS_LAMBDA_RUNTIME_API": self.address,
            "LAMBDA_TASK_ROOT": str(self.task_root),
            "LAMBDA_RUNTIME_DIR": str(self.task_root),
            "_HANDLER": self.handler,
            "AWS_LAMBDA_FUNCTION_NAME": self.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.function_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "local",
            "AWS_REGION": "us-east-1",
            "PYTHONPATH": os.pathsep.join(
                [str(self.task_root), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }

    def invoke(self, event: Any, *, timeout: float = 3.0, wait: float = 60.0) -> Invocation:
        """Hand the runtime one event with `timeout` seconds to run; wait for what it posts."""
        if self.process is None:
            self.start()
        self.thaw()
        request_id = str(uuid.uuid4())
        deadline_ms = int((time.time() + timeout) * 1000)
        for extension in self.extensions:
            extension.hand(
                {"eventType": "INVOKE", "deadlineMs": deadline_ms, "requestId": request_id}
            )
        self._events.put(_Event(request_id, json.dumps(event).encode(), deadline_ms))
        end = time.monotonic() + wait
        with self._changed:
            while request_id not in self._results or not self._extensions_done():
                if self.init_error is not None:
                    raise InitError(f"the function failed to initialise: {self.init_error}")
                assert self.process is not None
                if self.process.poll() is not None:
                    raise InitError(
                        f"the runtime exited ({self.process.returncode}):\n{self.log()}"
                    )
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no answer for {request_id} in {wait}s:\n{self.log()}")
                if self.kill_at_deadline and time.time() * 1000 > deadline_ms:
                    return self._timed_out(request_id, deadline_ms)
                self._changed.wait(min(left, 0.1))
            result = self._results.pop(request_id)
        if self.extensions:
            result = replace(result, ended_ms=int(time.time() * 1000))
        return result

    def _timed_out(self, request_id: str, deadline_ms: int) -> Invocation:
        """Past the deadline: the runtime is killed; the next event starts a new one."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        self._frozen = False
        self._deadlines.pop(request_id, None)
        self.timeouts += 1
        self._spawn_runtime()
        body = {"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out"}
        now = int(time.time() * 1000)
        return Invocation(request_id, False, body, deadline_ms, now, "Sandbox.Timedout")

    def _extensions_done(self) -> bool:
        return all(e.waiting.is_set() for e in self.extensions)

    def thaw(self) -> None:
        """Let a frozen runtime run again (as Lambda does when the next event comes)."""
        for extension in self.extensions:
            extension.thaw()
        if self._frozen and self.process is not None:
            self._frozen = False
            os.kill(self.process.pid, signal.SIGCONT)

    def log(self) -> str:
        """What the runtime printed so far (stdout and stderr)."""
        return self._log.read_text(errors="replace")

    def close(self) -> None:
        self._closing = True
        if self.process is not None:
            self.thaw()
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._shut_down_extensions()
        self._server.shutdown()
        self._server.server_close()
        self._log.unlink(missing_ok=True)

    def _shut_down_extensions(self) -> None:
        """SHUTDOWN to every extension; those still running at the deadline are killed."""
        deadline = time.time() + SHUTDOWN_SECONDS
        for extension in self.extensions:
            extension.hand(
                {
                    "eventType": "SHUTDOWN",
                    "deadlineMs": int(deadline * 1000),
                    "shutdownReason": "spindown",
                }
            )
        for extension in self.extensions:
            if extension.process is None:
                continue
            try:
                extension.process.wait(max(0.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                extension.process.kill()
                extension.process.wait()

    def __enter__(self) -> LambdaRuntime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- called by the Runtime API server ---

    def _next(self) -> _Event | None:
        self.ready.set()
        while not self._closing:
            try:
                event = self._events.get(timeout=0.2)
            except queue.Empty:
                continue
            self._deadlines[event.request_id] = event.deadline_ms
            return event
        return None

    def _deadline_of(self, request_id: str) -> int | None:
        return self._deadlines.pop(request_id, None)

    def _posted(self, result: Invocation) -> None:
        if self.freeze and self.process is not None:
            os.kill(self.process.pid, signal.SIGSTOP)
            self._frozen = True
            _wait_stopped(self.process.pid)
        with self._changed:
            self._results[result.request_id] = result
            self._changed.notify_all()
        for extension in self.extensions:
            if extension.telemetry is not None:
                _runtime_done(extension.telemetry, result)

    # --- the Extensions and Telemetry APIs ---

    def _extension(self, identifier: str | None) -> _Extension | None:
        return next((e for e in self.extensions if e.id == identifier), None)

    def _register(self, name: str) -> _Extension | None:
        extension = next(
            (e for e in self.extensions if e.path.name == name and not e.registered.is_set()),
            None,
        )
        if extension is not None:
            extension.registered.set()
        return extension

    def _init_failed(self, error: Any) -> None:
        with self._changed:
            self.init_error = error
            self._changed.notify_all()

    def _extension_next(self, extension: _Extension) -> dict[str, Any] | None:
        """Block until the extension's next event; asking means it is done with the last."""
        extension.asks(freeze=self.freeze and not self._closing)
        with self._changed:
            self._changed.notify_all()
        return extension.takes()


def _wait_stopped(pid: int, limit: float = 1.0) -> None:
    """Return once the process is in the stopped state (Linux /proc; elsewhere at once)."""
    stat = Path(f"/proc/{pid}/stat")
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if state in ("T", "t"):
            return
        time.sleep(0.001)


def _runtime_done(uri: str, result: Invocation) -> None:
    """platform.runtimeDone to a Telemetry API subscriber (Lambda's own buffering aside)."""
    import urllib.request

    record = {
        "requestId": result.request_id,
        "status": "success" if result.ok else "error",
    }
    body = json.dumps(
        [
            {
                "time": datetime_ms(result.posted_ms),
                "type": "platform.runtimeDone",
                "record": record,
            }
        ]
    ).encode()
    request = urllib.request.Request(
        uri, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with contextlib.suppress(OSError):  # a subscriber gone: Lambda drops what it cannot deliver
        urllib.request.urlopen(request, timeout=5).close()


def datetime_ms(epoch_ms: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(epoch_ms / 1000, timezone.utc).isoformat(timespec="milliseconds")


class _RuntimeAPIServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, runtime: LambdaRuntime) -> None:
        super().__init__(("127.0.0.1", 0), _RuntimeAPIHandler)
        self.runtime = runtime

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # the runtime was stopped
            super().handle_error(request, client_address)


class _RuntimeAPIHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # the runtime client keeps its connection open
    disable_nagle_algorithm = True  # headers and body go in two writes
    server: _RuntimeAPIServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        runtime = self.server.runtime
        if self.path == f"{EXTENSION_API}/event/next":
            extension = runtime._extension(self.headers.get("Lambda-Extension-Identifier"))
            if extension is None:
                self._answer(403, {"errorType": "Extension.Unknown", "errorMessage": "no id"})
                return
            next_event = runtime._extension_next(extension)
            if next_event is None:
                self._answer(500, {"errorType": "ShuttingDown", "errorMessage": "closing"})
                return
            self._answer(200, next_event)
            return
        if self.path != f"{API}/invocation/next":
            self._answer(404, {"errorType": "NotFound", "errorMessage": self.path})
            return
        event = runtime._next()
        if event is None:
            self._answer(500, {"errorType": "ShuttingDown", "errorMessage": "closing"})
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(event.body)))
        self.send_header("Lambda-Runtime-Aws-Request-Id", event.request_id)
        self.send_header("Lambda-Runtime-Deadline-Ms", str(event.deadline_ms))
        self.send_header(
            "Lambda-Runtime-Invoked-Function-Arn",
            FUNCTION_ARN.format(name=runtime.function_name),
        )
        self.send_header(
            "Lambda-Runtime-Trace-Id",
            f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]}"
            ";Sampled=0",
        )
        self.end_headers()
        self.wfile.write(event.body)

    def do_PUT(self) -> None:
        runtime = self.server.runtime
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        extension = runtime._extension(self.headers.get("Lambda-Extension-Identifier"))
        if self.path != TELEMETRY_API or extension is None:
            self._answer(404, {"errorType": "NotFound", "errorMessage": self.path})
            return
        try:
            extension.telemetry = json.loads(body)["destination"]["URI"]
        except (ValueError, KeyError, TypeError):
            self._answer(400, {"errorType": "InvalidRequest", "errorMessage": "destination.URI"})
            return
        self._answer(200, {"status": "OK"})

    def do_POST(self) -> None:
        runtime = self.server.runtime
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == f"{EXTENSION_API}/register":
            extension = runtime._register(self.headers.get("Lambda-Extension-Name") or "")
            if extension is None:
                self._answer(403, {"errorType": "Extension.Unknown", "errorMessage": "name"})
                return
            self._answer(
                200,
                {"functionName": runtime.function_name, "functionVersion": "$LATEST"},
                {"Lambda-Extension-Identifier": extension.id},
            )
            return
        if self.path.startswith(f"{EXTENSION_API}/"):  # init/error, exit/error
            self._answer(202, {"status": "OK"})
            return
        posted_ms = int(time.time() * 1000)
        try:
            data: Any = json.loads(body) if body else None
        except ValueError:
            data = body.decode(errors="replace")
        parts = self.path.removeprefix(API).strip("/").split("/")
        if parts == ["init", "error"]:
            runtime._init_failed(data)
            self._answer(202, {"status": "OK"})
            return
        if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
            deadline_ms = runtime._deadline_of(parts[1])
            if deadline_ms is None:
                self._answer(400, {"errorType": "InvalidRequestID", "errorMessage": parts[1]})
                return
            runtime._posted(
                Invocation(
                    request_id=parts[1],
                    ok=parts[2] == "response",
                    body=data,
                    deadline_ms=deadline_ms,
                    posted_ms=posted_ms,
                    error_type=self.headers.get("Lambda-Runtime-Function-Error-Type"),
                )
            )
            self._answer(202, {"status": "OK"})
            return
        self._answer(404, {"errorType": "NotFound", "errorMessage": self.path})

    def _answer(
        self, status: int, payload: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
