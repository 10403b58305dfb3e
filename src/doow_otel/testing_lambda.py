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

POSIX only (the freeze is a signal).
"""

from __future__ import annotations

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
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["InitError", "Invocation", "LambdaRuntime"]

API = "/2018-06-01/runtime"
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
    ) -> None:
        self.handler = handler
        self.task_root = Path(task_root).resolve()
        self.env = dict(env or {})
        self.function_name = function_name
        self.freeze = freeze and hasattr(signal, "SIGSTOP")
        self.python = python
        self.init_error: Any = None
        self.process: subprocess.Popen[bytes] | None = None
        self.ready = threading.Event()  # set when the runtime, initialised, asks for an event
        self._events: queue.Queue[_Event] = queue.Queue()
        self._results: dict[str, Invocation] = {}
        self._deadlines: dict[str, int] = {}  # handed-out events awaiting an answer
        self._changed = threading.Condition()
        self._frozen = False
        self._closing = False
        self._server = _RuntimeAPIServer(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="lambda-runtime-api", daemon=True
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
        env = {
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
        with open(self._log, "wb") as log:
            self.process = subprocess.Popen(
                [self.python, "-m", "awslambdaric", self.handler],
                cwd=self.task_root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def invoke(self, event: Any, *, timeout: float = 3.0, wait: float = 60.0) -> Invocation:
        """Hand the runtime one event with `timeout` seconds to run; wait for what it posts."""
        if self.process is None:
            self.start()
        self.thaw()
        request_id = str(uuid.uuid4())
        deadline_ms = int((time.time() + timeout) * 1000)
        self._events.put(_Event(request_id, json.dumps(event).encode(), deadline_ms))
        end = time.monotonic() + wait
        with self._changed:
            while request_id not in self._results:
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
                self._changed.wait(min(left, 0.1))
            return self._results.pop(request_id)

    def thaw(self) -> None:
        """Let a frozen runtime run again (as Lambda does when the next event comes)."""
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
        self._server.shutdown()
        self._server.server_close()
        self._log.unlink(missing_ok=True)

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

    def _init_failed(self, error: Any) -> None:
        with self._changed:
            self.init_error = error
            self._changed.notify_all()


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

    def do_POST(self) -> None:
        runtime = self.server.runtime
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
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

    def _answer(self, status: int, payload: Mapping[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
