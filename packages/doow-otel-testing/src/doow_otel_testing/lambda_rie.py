"""`doow-local lambda handler.py:handler --event '{...}' [--with-extension]`: a function run
locally under AWS's real Lambda Runtime Interface Emulator (aws-lambda-rie) and the real
runtime interface client (awslambdaric), against a local Doow (or the endpoint given).

Without `--with-extension` the function sends to Doow itself (the in-process route, a
handler wrapped by `@meter.with_lambda`). With it, the otelcol-doow extension layer is
unpacked into a private /opt (a mount namespace: the host's /opt is untouched; needs
Linux and root), the emulator starts the extension as Lambda does, and the function runs
with `DOOW_ROUTE=collector`, pushing OTLP to the extension on localhost.

After the events, the emulator is stopped as Lambda retires an environment (SIGTERM: the
extension gets SHUTDOWN and drains), and what arrived is printed. The emulator offers no
Telemetry API and never freezes the environment; the freeze is what
`doow_otel_testing.lambda_runtime.LambdaRuntime` emulates.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

__all__ = ["LambdaSetupError", "run"]

INVOKE_PATH = "/2015-03-31/functions/function/invocations"
RIE = "aws-lambda-rie"


class LambdaSetupError(RuntimeError):
    """What is missing to run the emulator here, and how to get it."""


@dataclass(frozen=True)
class Target:
    """Where usage goes: the endpoint and key the function (or the extension) uses."""

    endpoint: str
    api_key: str


def find_rie(given: str | None = None) -> Path:
    """The emulator: `given`, else on PATH, else where the repository's
    scripts/install-lambda-rie.sh puts it (collector/_tools, from the current directory)."""
    candidates = [given] if given else [shutil.which(RIE), f"collector/_tools/{RIE}"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate).resolve()
    raise LambdaSetupError(
        f"{RIE} not found{f' at {given}' if given else ' on PATH or in collector/_tools'}: "
        "install it with `bash scripts/install-lambda-rie.sh` (from the doow-otel repository; "
        "needs Go), or pass --rie PATH"
    )


def find_layer(given: str | None = None) -> Path:
    path = Path(given or "collector/_build/otelcol-doow-lambda-layer.zip")
    if not path.is_file():
        raise LambdaSetupError(
            f"the extension layer {path} does not exist: build it with "
            "`bash collector/build-lambda-layer.sh` (from the doow-otel repository), or pass "
            "--layer PATH"
        )
    return path.resolve()


def _check_extension_possible() -> None:
    if not sys.platform.startswith("linux"):
        raise LambdaSetupError("--with-extension needs Linux (a private /opt for the layer)")
    if os.geteuid() != 0:
        raise LambdaSetupError(
            "--with-extension mounts the layer on a private /opt, which needs root (the "
            "host's /opt is never touched): run as root, or without --with-extension"
        )
    if shutil.which("unshare") is None:
        raise LambdaSetupError("--with-extension needs unshare(1) (util-linux)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _handler(spec: str) -> tuple[Path, str]:
    """`path/handler.py:function` -> (the task root, awslambdaric's "module.function")."""
    path, _, function = spec.rpartition(":")
    if not path or not function or not path.endswith(".py"):
        raise LambdaSetupError(
            f"handler {spec!r}: give FILE.py:FUNCTION, e.g. examples/lambda/handler.py:handler"
        )
    file = Path(path).resolve()
    if not file.is_file():
        raise LambdaSetupError(f"handler {spec!r}: {file} does not exist")
    return file.parent, f"{file.stem}.{function}"


@contextlib.contextmanager
def _emulator(
    rie: Path,
    task_root: Path,
    handler: str,
    target: Target,
    work: Path,
    layer: Path | None,
    log: TextIO,
) -> Iterator[int]:
    """The emulator running the function; yields its port. Stopped with SIGTERM."""
    port, api_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(task_root), os.environ.get("PYTHONPATH")])),
        "DOOW_SPOOL_DIR": str(work / "spool"),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": os.environ.get("AWS_LAMBDA_FUNCTION_TIMEOUT", "30"),
    }
    command: list[str] = []
    if layer is None:
        env.update(DOOW_TRACK_API_KEY=target.api_key, DOOW_TRACK_ENDPOINT=target.endpoint)
    else:
        opt = work / "opt"
        with zipfile.ZipFile(layer) as unzipped:
            unzipped.extractall(opt)
        for extension in (opt / "extensions").iterdir():
            extension.chmod(0o755)  # zipfile drops the mode
        otlp = _free_port()
        env.update(
            DOOW_API_KEY=target.api_key,  # the extension's settings (collector/lambda)
            DOOW_ENDPOINT=target.endpoint,
            DOOW_EXTENSION_OTLP_ENDPOINT=f"127.0.0.1:{otlp}",
            DOOW_EXTENSION_QUEUE_DIR=str(work / "queue"),
            DOOW_ROUTE="collector",  # the function's: OTLP to the extension
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{otlp}",
        )
        env.pop("DOOW_TRACK_API_KEY", None)
        script = 'mount --bind "$1" /opt && cd "$2" && shift 2 && exec "$@"'
        command = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh"]
        command += [str(opt), str(task_root)]
    command += [
        str(rie),
        *("--runtime-interface-emulator-address", f"127.0.0.1:{port}"),
        *("--runtime-api-address", f"127.0.0.1:{api_port}"),
        *(sys.executable, "-m", "awslambdaric", handler),
    ]
    process = subprocess.Popen(
        command,
        cwd=task_root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        _wait_listening(process, port)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)  # as Lambda retires the environment
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _wait_listening(process: subprocess.Popen[bytes], port: int) -> None:
    end = time.monotonic() + 15
    while time.monotonic() < end:
        if process.poll() is not None:
            raise LambdaSetupError("the emulator exited at start (see its log above)")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise LambdaSetupError("the emulator did not listen within 15 s")


def invoke(port: int, event: object, timeout: float = 60.0) -> object:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{INVOKE_PATH}", data=json.dumps(event).encode()
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        body = answer.read()
    try:
        return json.loads(body)
    except ValueError:
        return body.decode(errors="replace")


def run(
    handler: str,
    events: Sequence[object],
    *,
    with_extension: bool = False,
    rie: str | None = None,
    layer: str | None = None,
    endpoint: str | None = None,
    api_key: str | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """The `doow-local lambda` command: 0 when every invocation answered."""
    task_root, module_function = _handler(handler)
    emulator = find_rie(rie)
    zip_path = find_layer(layer) if with_extension else None
    if with_extension:
        _check_extension_possible()
    if importlib_missing("awslambdaric"):
        raise LambdaSetupError("awslambdaric is not installed: pip install awslambdaric")
    with contextlib.ExitStack() as stack:
        local = None
        if endpoint is None:
            from doow_otel_testing import LocalDoow

            local = stack.enter_context(LocalDoow())
            target = Target(local.url, local.api_key)
            print(f"local Doow: {local.url} (page: {local.url}/#key={local.api_key})", file=out)
        else:
            if not api_key:
                raise LambdaSetupError("--endpoint needs --api-key (or DOOW_TRACK_API_KEY)")
            target = Target(endpoint, api_key)
        work = Path(tempfile.mkdtemp(prefix="doow-lambda-"))
        kept: list[bool] = []  # the work directory stays when it holds undelivered usage

        def remove_work() -> None:
            if not kept:
                shutil.rmtree(work, ignore_errors=True)

        stack.callback(remove_work)
        log_path = work / "emulator.log"
        route = "through the otelcol-doow extension" if with_extension else "in-process"
        print(f"{module_function} under {emulator.name}, usage sent {route}", file=out)
        with open(log_path, "w") as log:
            try:
                with _emulator(
                    emulator, task_root, module_function, target, work, zip_path, log
                ) as port:
                    for n, event in enumerate(events, 1):
                        answer = invoke(port, event)
                        print(f"invocation {n}: {json.dumps(answer)}", file=out)
            except LambdaSetupError:
                out.write(log_path.read_text(errors="replace")[-4000:])
                raise
        outcome = _extension_outcome(log_path.read_text(errors="replace"))
        if with_extension:
            print(f"extension: {outcome}", file=out)
        if local is not None:
            _print_usage(local, out)
        elif any((work / "spool").rglob("*.batch")) or "not yet delivered" in outcome:
            kept.append(True)  # a real endpoint's usage: never deleted undelivered
            print(
                f"usage not yet delivered is kept in {work} (spool/: DOOW_SPOOL_DIR={work}/spool "
                "doow-otel spool shows it, and the next send with this endpoint and key "
                "delivers it; queue/: the extension's, delivered when it runs on that "
                "DOOW_EXTENSION_QUEUE_DIR again)",
                file=out,
            )
    return 0


def _extension_outcome(log: str) -> str:
    """What the extension said of the usage at SHUTDOWN (its own line), in one line."""
    for line in log.splitlines():
        if "usage not yet delivered" in line:
            start = line.index("shutting down")
            return line[start:].split("\t", 1)[0].split('",', 1)[0].strip()
    return "stopped at SHUTDOWN with nothing left to deliver"


def importlib_missing(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None


def _print_usage(doow: object, out: TextIO) -> None:
    from doow_otel_testing import LocalDoow

    assert isinstance(doow, LocalDoow)
    rows = doow.usage()
    if not rows:
        print("arrived: nothing", file=out)
        return
    for row in rows:
        print(
            f"arrived: {row['metric']} {row['total']} for {row['license_id']} "
            f"({row['events']} {'event' if row['events'] == 1 else 'events'})",
            file=out,
        )
