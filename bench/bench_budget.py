"""Doow events a minute per route, against Doow's event budget (issues 19.8 and 21.9).

Doow takes at most 1,000 events a minute per organization, and answers 429 past it. For
fixed workloads, each against its own local server enforcing that budget (`doow-local
serve --events-per-minute 1000`, in its own process), this counts by the server's own
books (`/api/minutes`, `/api/usage`): events offered to Doow in the busiest minute,
events stored, 429s, whether the stored totals equal the tracked ones per metric and
license, and how long after the load stops the backlog takes to drain. Side by side:
  - doow-otel with the defaults a user gets (`DoowTracker()`, 60 s windows);
  - Doow's SDK strategy, one event per `track()`: the `doow-track` 0.1.2 Python SDK as
    the client (its defaults, pointed at the local server);
  - the budget, 1,000 a minute.
Workloads:
  (a) a service of 4 worker processes, 200 licenses x 2 metrics, 200 track()/s in all,
      direct to Doow (the workers share one spool directory, as on one host);
  (b) a Lambda function, direct to Doow, 2,000 invocations a minute over 50 licenses
      (each bills one license: api_calls and tokens). Ours runs under the in-package
      Lambda emulator (the real runtime client, each environment frozen between
      invocations); doow-track runs in simulated environments in this process (threads:
      a frozen environment's background flush never runs, so its flush_interval is
      pinned), flushing at the end of each invocation. An invocation goes to the
      environment idle the longest, or to a new one when none is idle (Lambda scales
      out); after the load, one invocation a second that bills nothing keeps the
      environments thawed (a frozen one sends nothing);
  (c) the same function on the Lambda extension route (the layer's otelcol-doow beside
      each environment, DOOW_ROUTE=collector), direct to Doow and forwarding to a gateway
      (collector/gateway.yaml, aggregating per stream and 60 s window);
  (d) 20 processes on the collector route (`DoowTracker()` with DOOW_ROUTE=collector)
      sending OTLP to one otelcol-doow (otel-collector-config.yaml, aggregating), against
      20 processes of doow-track sending to Doow.
Each load lasts 90 s from a minute's start (a full minute of steady load, and an end
mid-window), in two groups a minute apart: (a), (d) and doow-track's (b), then ours (b)
and (c); each run is watched until its totals are exact (at most 180 s after its load;
doow-track's 60 s, then projected), each run with its own server, in its own process:
7 to 8 minutes in all. On the Lambda routes, what the environments still hold when the
watch ends is measured again after they retire (SIGTERM). `--quick` shortens everything
(6 s of load, 2 s windows, fewer processes): a smoke run, its figures no per-minute
figures.
Usage: python bench/bench_budget.py [--quick] [--json PATH]
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from queue import Queue
from typing import Any, Protocol

import httpx

from _results import Record, Recorder, options
from _server import KEY, serving, table
from doow_otel_testing.gateway_credentials import fleet_credentials
from doow_otel_testing.processes import free_port

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
COLLECTOR = ROOT / "collector" / "_build" / "otelcol-doow"
EXTENSION = ROOT / "collector" / "_build" / "lambda" / "otelcol-doow"
BUDGET = 1000
LAMBDA_TIMEOUT = 3.0  # seconds: Lambda's default function timeout
OURS = "doow-otel (defaults)"
SDK = "doow-track 0.1.2 (one event per track())"
SDK_SHORT = "doow-track (1 event/call)"


@dataclass(frozen=True)
class Plan:
    """The sizes of one run: the full one, or --quick."""

    load: float  # seconds of load
    align: bool  # start each group at a minute's start
    window: float | None  # seconds; None: the defaults (60 s tracker and collector windows)
    service_drain_limit: float  # seconds after the load ours may take to drain: (a), (d)
    lambda_drain_limit: float  # the same on the Lambda routes (a trickle of invocations)
    sdk_watch: float  # seconds after the load that doow-track is watched
    workers: int
    fleet: int
    licenses: int
    track_per_second: float
    lambda_licenses: int
    invocations_per_minute: int
    environments: int  # warm at the start
    most_environments: int  # ours, under the emulator
    most_sdk_environments: int  # doow-track's, simulated (threads)
    setup: float  # seconds a group takes to set up (processes, environments)
    group_gap: float  # seconds from the first group's start to the second's


FULL = Plan(
    load=90,
    align=True,
    window=None,
    service_drain_limit=180,
    lambda_drain_limit=180,
    sdk_watch=60,
    workers=4,
    fleet=20,
    licenses=200,
    track_per_second=200,
    lambda_licenses=50,
    invocations_per_minute=2000,
    environments=10,
    most_environments=30,
    most_sdk_environments=250,
    setup=15,
    group_gap=60,
)
QUICK = Plan(
    load=6,
    align=False,
    window=2.0,
    service_drain_limit=45,
    lambda_drain_limit=45,
    sdk_watch=4,
    workers=2,
    fleet=3,
    licenses=20,
    track_per_second=40,
    lambda_licenses=10,
    invocations_per_minute=300,
    environments=2,
    most_environments=4,
    most_sdk_environments=20,
    setup=8,
    group_gap=0,
)


# --- the local server, one per run (one organization's budget) ---


# `doow-local serve` with more open connections than its 128: doow-track's simulated
# Lambda environments hold one each, and Doow does not refuse them
SERVE = """
import sys, threading
from doow_otel_testing.server import start
server, _ = start(port=0, keys=[sys.argv[1]], events_per_minute=int(sys.argv[2]),
                  max_connections=4096)
print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
threading.Event().wait()
"""


class Doow:
    """A local server in its own process enforcing the budget, read through its API."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        command = [sys.executable, "-c", SERVE, KEY, str(BUDGET)]
        self.url, _ = stack.enter_context(serving(command))

    def _get(self, path: str) -> Any:
        answer = httpx.get(
            f"{self.url}{path}", headers={"Authorization": f"Bearer {KEY}"}, timeout=30
        )
        answer.raise_for_status()
        return answer.json()

    def usage(self) -> dict[str, int]:
        """Stored quantity per "metric license"."""
        return {
            f"{row['metric']} {row['license_id']}": row["total"]
            for row in self._get("/api/usage")["usage"]
        }

    def minutes(self) -> list[dict[str, Any]]:
        minutes: list[dict[str, Any]] = self._get("/api/minutes")["minutes"]
        return minutes


# --- what one run measured ---


@dataclass
class Outcome:
    tracked: dict[str, int] = field(default_factory=dict)  # "metric license" -> quantity
    calls: int = 0  # track() calls
    invocations: int = 0  # Lambda invocations that bill usage
    load_end: float = 0.0  # Unix time the last usage was tracked (drain counts from it)
    stored: dict[str, int] = field(default_factory=dict)
    drain: float | None = None  # seconds after the load until exact; None: not within
    watched: float = 0.0  # seconds after the load the run was watched
    minutes: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return bool(self.tracked) and self.stored == self.tracked

    @property
    def share(self) -> float:
        tracked = sum(self.tracked.values())
        return sum(self.stored.values()) / tracked if tracked else 0.0

    @property
    def peak_offered(self) -> int:
        return max((m["offered"] for m in self.minutes), default=0)

    @property
    def peak_stored(self) -> int:
        return max((m["stored"] for m in self.minutes), default=0)

    @property
    def offered(self) -> int:
        return sum(m["offered"] for m in self.minutes)

    @property
    def stored_events(self) -> int:
        return sum(m["stored"] for m in self.minutes)

    @property
    def duplicates(self) -> int:
        """Events offered again after they were stored: they cost budget, bill nothing."""
        return sum(m["duplicates"] for m in self.minutes)

    @property
    def rate_limited(self) -> int:
        return sum(m["rate_limited_requests"] for m in self.minutes)

    def projected_drain(self) -> float:
        """Seconds the rest would take at the budget's pace, at one event per call (a
        lower bound: it assumes nothing else is sent and nothing is lost)."""
        left = max(0, self.calls - self.stored_events)
        return left / BUDGET * 60


def watch(
    doow: Doow,
    outcome: Outcome,
    load_end: float,
    limit: float,
    tick: Callable[[], None] | None = None,
) -> None:
    """Poll the server until its totals equal what was tracked, or `limit` seconds after
    the load; `tick` (if any) runs each second meanwhile."""
    while True:
        now = time.time()
        outcome.stored = doow.usage()
        if outcome.exact:
            outcome.drain = max(0.0, now - load_end)
            break
        if now - load_end >= limit:
            break
        if tick is not None:
            tick()
        time.sleep(max(0.0, 1.0 - (time.time() - now)))
    outcome.watched = time.time() - load_end
    outcome.minutes = doow.minutes()


# --- (a) and (d): long-running processes ---


def spawn_workers(
    sdk: str, count: int, env: dict[str, str], plan: Plan, start: float, out: Path
) -> list[subprocess.Popen[bytes]]:
    rate = plan.track_per_second / count
    return [
        subprocess.Popen(
            [sys.executable, str(BENCH / "_budget_worker.py"), sdk]
            + ["--start", f"{start:.3f}", "--seconds", str(plan.load), "--rate", str(rate)]
            + ["--licenses", str(plan.licenses), "--seed", str(i), "--out", str(out / f"{i}.json")],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(count)
    ]


def gather(out: Path, count: int, limit: float = 30.0) -> Outcome:
    """What the workers tracked (each writes its file when its load ends)."""
    outcome = Outcome()
    end = time.monotonic() + limit
    files = [out / f"{i}.json" for i in range(count)]
    while not all(f.exists() for f in files):
        if time.monotonic() > end:
            raise RuntimeError(f"a worker did not finish its load ({out})")
        time.sleep(0.1)
    tracked: dict[str, int] = defaultdict(int)
    outcome.load_end = max(f.stat().st_mtime for f in files)  # a worker behind catches up
    for f in files:
        data = json.loads(f.read_text())
        outcome.calls += data["calls"]
        for key, quantity in data["tracked"].items():
            tracked[key] += quantity
    outcome.tracked = dict(tracked)
    return outcome


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for p in processes:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in processes:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def window_env(plan: Plan) -> dict[str, str]:
    """The tracker's window: the default unless --quick shortens it."""
    if plan.window is None:
        return {}
    return {"DOOW_TRACK_FLUSH_INTERVAL": str(int(plan.window * 1000))}


def service_run(sdk: str, processes: int, collector: bool, plan: Plan, start: float) -> Outcome:
    """`processes` workers of one service, `ours` or `doow-track`; ours through one
    aggregating otelcol-doow when `collector`."""
    with contextlib.ExitStack() as stack:
        doow = Doow(stack)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-budget-")))
        env = {
            "DOOW_TRACK_API_KEY": KEY,
            "DOOW_TRACK_ENDPOINT": doow.url,
            "DOOW_SPOOL_DIR": str(tmp / "spool"),  # shared: the processes of one host
        }
        if sdk == "ours":
            env.update(window_env(plan))
        if collector:
            endpoint = stack.enter_context(aggregating_collector(doow.url, tmp, plan))
            env.update(DOOW_ROUTE="collector", OTEL_EXPORTER_OTLP_ENDPOINT=endpoint)
        workers = spawn_workers(sdk, processes, env, plan, start, tmp)
        try:
            outcome = gather(tmp, processes, limit=start + plan.load + 60 - time.time())
            limit = plan.service_drain_limit if sdk == "ours" else plan.sdk_watch
            watch(doow, outcome, outcome.load_end, limit)
        finally:
            stop(workers)
        return outcome


def await_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"otelcol-doow exited:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"otelcol-doow did not become healthy:\n{log.read_text()[-3000:]}")


PORT = "{port}"  # in an otelcol environment value: a free port, picked at its start


@contextlib.contextmanager
def otelcol(config: Path, env: dict[str, str], log: Path) -> Iterator[dict[str, str]]:
    """otelcol-doow on `config` until the block ends (SIGTERM, as a shutdown); yields its
    environment, each PORT in it a free port. Started again on fresh ports when it exits
    at its start (on a shared machine another process may take a port first)."""
    for attempt in (1, 2):
        ports = {**env, "HEALTH_CHECK_ENDPOINT": f"127.0.0.1:{PORT}"}
        ports = {k: v.replace(PORT, str(free_port())) for k, v in ports.items()}
        with open(log, "ab") as out:
            process = subprocess.Popen(
                [str(COLLECTOR), "--config", str(config)],
                env={**os.environ, **ports},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            await_healthy(f"http://{ports['HEALTH_CHECK_ENDPOINT']}/", process, log)
        except RuntimeError:
            stop([process])
            if attempt == 2:
                raise
            continue
        try:
            yield ports
        finally:
            stop([process])
        return


def collector_window_env(plan: Plan) -> dict[str, str]:
    if plan.window is None:
        return {}
    return {"DOOW_AGGREGATION_WINDOW": f"{plan.window:g}s", "DOOW_AGGREGATION_GRACE": "1s"}


@contextlib.contextmanager
def aggregating_collector(url: str, tmp: Path, plan: Plan) -> Iterator[str]:
    """One otelcol-doow on otel-collector-config.yaml (aggregation on); its OTLP/HTTP
    base URL."""
    env = {
        "DOOW_API_KEY": KEY,
        "DOOW_ENDPOINT": url,
        "DOOW_QUEUE_DIR": str(tmp / "collector"),
        "OTLP_GRPC_ENDPOINT": f"127.0.0.1:{PORT}",
        "OTLP_HTTP_ENDPOINT": f"127.0.0.1:{PORT}",
        "OTELCOL_METRICS_PORT": PORT,
        **collector_window_env(plan),
    }
    with otelcol(ROOT / "otel-collector-config.yaml", env, tmp / "collector.log") as ports:
        yield f"http://{ports['OTLP_HTTP_ENDPOINT']}"


@contextlib.contextmanager
def gateway(url: str, tmp: Path, plan: Plan) -> Iterator[dict[str, str]]:
    """One gateway on collector/gateway.yaml (TLS and a token, a self-signed certificate
    made here); the environment a Lambda extension needs to forward to it."""
    gateway_env, sender_env = fleet_credentials(tmp)
    env = {
        "DOOW_API_KEY": KEY,
        "DOOW_ENDPOINT": url,
        "DOOW_QUEUE_DIR": str(tmp / "gateway"),
        "OTLP_GRPC_ENDPOINT": f"127.0.0.1:{PORT}",
        "OTLP_HTTP_ENDPOINT": f"127.0.0.1:{PORT}",
        "OTELCOL_METRICS_PORT": PORT,
        **gateway_env,
        **collector_window_env(plan),
    }
    with otelcol(ROOT / "collector" / "gateway.yaml", env, tmp / "gateway.log") as ports:
        yield {"DOOW_GATEWAY_ENDPOINT": f"https://{ports['OTLP_HTTP_ENDPOINT']}", **sender_env}


# --- (b) and (c): a Lambda function's environments ---


class Environment(Protocol):
    """One execution environment of the function."""

    def start(self) -> None: ...

    def invoke(self, event: dict[str, Any]) -> bool: ...

    def close(self) -> None: ...


class Emulated:
    """Ours, under the in-package emulator: awslambdaric running bench/_budget_lambda.py,
    frozen (SIGSTOP) between invocations; with the layer's otelcol-doow as its
    extension when `extension_env` is given."""

    def __init__(self, env: dict[str, str], extension_env: dict[str, str] | None) -> None:
        from doow_otel_testing.lambda_runtime import LambdaRuntime

        extensions: list[Path] = []
        env = dict(env)
        if extension_env is not None:
            extensions.append(EXTENSION)
            otlp = f"127.0.0.1:{free_port()}"
            env.update(extension_env)
            env.update(
                DOOW_ROUTE="collector",
                OTEL_EXPORTER_OTLP_ENDPOINT=f"http://{otlp}",
                DOOW_EXTENSION_OTLP_ENDPOINT=otlp,
                DOOW_EXTENSION_CONFIG=str(ROOT / "collector" / "lambda" / "config.yaml"),
            )
        self.runtime = LambdaRuntime(
            "_budget_lambda.handler",
            task_root=BENCH,
            env=env,
            function_name="bench-budget",
            extensions=extensions,
        )

    def start(self) -> None:
        self.runtime.start()

    def invoke(self, event: dict[str, Any]) -> bool:
        return self.runtime.invoke(event, timeout=LAMBDA_TIMEOUT).ok

    def close(self) -> None:
        self.runtime.close()


class DoowTrackEnvironment:
    """doow-track in a simulated environment (this process): track each usage, flush at
    the end of the invocation. Its background flush is pinned to an hour: a frozen
    environment runs none."""

    def __init__(self, url: str) -> None:
        self.url = url

    def start(self) -> None:
        from doow_track import Tracker, TrackerOptions

        self.tracker = Tracker(KEY, TrackerOptions(endpoint=self.url, flush_interval=3600))

    def invoke(self, event: dict[str, Any]) -> bool:
        from doow_track import TrackEvent

        for metric, quantity in event.get("track", []):
            self.tracker.track(
                TrackEvent(metric=metric, quantity=quantity, license_id=event["license_id"])
            )
        self.tracker.flush()
        return True

    def close(self) -> None:
        self.tracker._shutdown.set()  # abandoned, as a retired environment: no flush


class _Slot:
    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.queue: Queue[tuple[dict[str, Any], Callable[[bool, float], None]] | None] = Queue()


class Fleet:
    """The environments of one function. An invocation goes to the environment idle the
    longest, or to a new one (Lambda scales out; its first invocation pays the cold
    start) up to `most`; past that it waits for one to be idle."""

    def __init__(self, make: Callable[[], Environment], warm: int, most: int) -> None:
        self._make = make
        self.most = most
        self._idle: deque[_Slot] = deque()
        self._slots: list[_Slot] = []
        self._changed = threading.Condition()
        self._busy = 0
        self.durations: list[float] = []  # warm invocations'
        self.cold_starts = 0
        self.failed = 0
        self._threads: list[threading.Thread] = []
        self._closed = False
        self.start_errors: list[str] = []
        ready = threading.Barrier(warm + 1, timeout=120)
        for _ in range(warm):  # each pays its cold start before the load
            self.dispatch({}, lambda ok, seconds: ready.wait())
        ready.wait()
        if self.start_errors:
            raise RuntimeError(f"an environment did not start: {self.start_errors[0]}")
        self.durations.clear()
        self.cold_starts = 0
        self.failed = 0

    @property
    def size(self) -> int:
        return len(self._slots)

    def dispatch(self, event: dict[str, Any], done: Callable[[bool, float], None]) -> None:
        with self._changed:
            while not self._idle and len(self._slots) >= self.most:
                self._changed.wait()
            if self._idle:
                slot = self._idle.popleft()
            else:
                slot = _Slot(self._make())
                self._slots.append(slot)
                thread = threading.Thread(target=self._serve, args=(slot,), daemon=True)
                self._threads.append(thread)
                thread.start()
            self._busy += 1
        slot.queue.put((event, done))

    def _serve(self, slot: _Slot) -> None:
        try:
            slot.environment.start()
            error = None
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            self.start_errors.append(error)
        cold = True
        while (item := slot.queue.get()) is not None:
            event, done = item
            started = time.monotonic()
            try:
                ok = error is None and slot.environment.invoke(event)
            except Exception:
                ok = False
            seconds = time.monotonic() - started
            with self._changed:
                if cold:  # its init is in it (Lambda times the init apart)
                    self.cold_starts += 1
                else:
                    self.durations.append(seconds)
                self.failed += not ok
            cold = False
            done(ok, seconds)
            with self._changed:
                self._busy -= 1
                self._idle.append(slot)
                self._changed.notify_all()

    def idle(self, limit: float = 120.0) -> None:
        """Wait until no invocation is running."""
        end = time.monotonic() + limit
        with self._changed:
            while self._busy and time.monotonic() < end:
                self._changed.wait(0.5)

    def close(self) -> None:
        """Retire every environment (in parallel: each may take a few seconds); an
        invocation still running (doow-track retrying) is abandoned."""
        if self._closed:
            return
        self._closed = True
        self.idle(10)
        for slot in self._slots:
            slot.queue.put(None)

        def retire(slot: _Slot) -> None:
            with contextlib.suppress(Exception):
                slot.environment.close()

        closers = [threading.Thread(target=retire, args=(s,), daemon=True) for s in self._slots]
        for thread in closers:
            thread.start()
        for thread in closers:
            thread.join(30)


def lambda_run(kind: str, plan: Plan, start: float) -> Outcome:
    """The function at `plan.invocations_per_minute`: `kind` is "direct" (ours),
    "extension" (ours, the layer direct to Doow), "gateway" (ours, the layer forwarding
    to a gateway) or "doow-track"."""
    with contextlib.ExitStack() as stack:
        doow = Doow(stack)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-budget-")))
        extension_env: dict[str, str] | None = None
        if kind == "extension":
            extension_env = {"DOOW_API_KEY": KEY, "DOOW_ENDPOINT": doow.url}
        elif kind == "gateway":
            extension_env = stack.enter_context(gateway(doow.url, tmp, plan))
        numbers = iter(range(1_000_000))

        def make() -> Environment:
            if kind == "doow-track":
                return DoowTrackEnvironment(doow.url)
            home = tmp / f"env-{next(numbers)}"  # its own /tmp
            env = {
                "DOOW_TRACK_API_KEY": KEY,
                "DOOW_TRACK_ENDPOINT": doow.url,
                "DOOW_SPOOL_DIR": str(home / "spool"),
                "DOOW_EXTENSION_QUEUE_DIR": str(home / "queue"),
                **window_env(plan),
            }
            return Emulated(env, extension_env)

        most = plan.most_sdk_environments if kind == "doow-track" else plan.most_environments
        fleet = Fleet(make, plan.environments, most)
        stack.callback(fleet.close)
        outcome = Outcome()
        lock = threading.Lock()
        tracked: dict[str, int] = defaultdict(int)

        def done_with(event: dict[str, Any]) -> Callable[[bool, float], None]:
            def done(ok: bool, seconds: float) -> None:
                if not ok:
                    return
                with lock:
                    for metric, quantity in event["track"]:
                        tracked[f"{metric} {event['license_id']}"] += quantity
                        outcome.calls += 1

            return done

        rng = random.Random(7)
        interval = 60.0 / plan.invocations_per_minute
        count = int(plan.load / interval)
        time.sleep(max(0.0, start - time.time()))
        late = 0.0
        for n in range(count):
            at = start + n * interval
            time.sleep(max(0.0, at - time.time()))
            late = max(late, time.time() - at)
            event = {
                "license_id": f"lic_{rng.randrange(plan.lambda_licenses)}",
                "track": [["api_calls", 1], ["tokens", 1 + rng.randrange(500)]],
            }
            fleet.dispatch(event, done_with(event))
        dispatched = time.time() - start
        fleet.idle()
        load_end = outcome.load_end = time.time()  # later than planned when behind
        outcome.tracked = dict(tracked)
        durations = sorted(fleet.durations)
        p99 = durations[min(len(durations) - 1, int(len(durations) * 0.99))] if durations else 0
        outcome.invocations = count
        outcome.notes.append(
            f"{count} invocations dispatched in {dispatched:.1f} s "
            f"({count / max(dispatched, 1e-9) * 60:,.0f}/min; at most {late:.1f} s late), "
            f"{fleet.size} environments ({fleet.cold_starts} cold starts in the load), "
            f"{fleet.failed} failed; warm invocations p50 "
            f"{statistics.median(durations) * 1000 if durations else 0:.0f} ms, "
            f"p99 {p99 * 1000:.0f} ms, {sum(d > LAMBDA_TIMEOUT for d in durations)} over "
            f"Lambda's default {LAMBDA_TIMEOUT:g} s timeout"
        )
        limit = plan.sdk_watch if kind == "doow-track" else plan.lambda_drain_limit
        tick_at = [time.time()]

        def trickle() -> None:  # one invocation a second that bills nothing
            if time.time() >= tick_at[0]:
                tick_at[0] = time.time() + 1.0
                fleet.dispatch({}, lambda ok, seconds: None)

        watch(doow, outcome, load_end, limit, trickle)
        if outcome.exact or kind == "doow-track":
            return outcome
        # what the environments still held: Lambda retires an environment with SIGTERM
        # only when it has an extension; the tracker then seals and sends what it can
        fleet.close()
        end = time.monotonic() + 15
        while (stored := doow.usage()) != outcome.tracked and time.monotonic() < end:
            time.sleep(0.5)
        share = sum(stored.values()) / max(1, sum(outcome.tracked.values()))
        missing: dict[str, int] = defaultdict(int)
        for key, quantity in outcome.tracked.items():
            missing[key.split()[0]] += quantity - stored.get(key, 0)
        short = ", ".join(f"{q:,} {metric}" for metric, q in sorted(missing.items()) if q)
        outcome.notes.append(
            f"after the environments retired (SIGTERM): {share_text(share)} of the tracked "
            f"quantity stored ({'exact' if stored == outcome.tracked else f'short: {short}'})"
        )
        return outcome


# --- the table and the records ---


@dataclass(frozen=True)
class Workload:
    key: str  # "a", "b", "c direct", ...
    title: str  # in the table
    load: str  # in the legend above it
    goal: int | None  # events in the busiest minute, at most
    per_invocation: bool = False  # the goal: at most one event per invocation
    # its load needs more events a minute than the budget on this route (one per
    # invocation): it lags by design, and its records say so (params["over_budget"])
    over_budget: bool = False


def drain_text(outcome: Outcome, sdk: bool) -> str:
    if outcome.drain is not None:
        return f"{outcome.drain:.0f} s"
    if sdk:
        seconds = outcome.projected_drain()
        return (
            f">= {seconds / 60:.0f} min (projected)"
            if seconds >= 120
            else (f">= {seconds:.0f} s (projected)")
        )
    return f"not in {outcome.watched:.0f} s"


def share_text(share: float) -> str:
    """A share of the tracked quantity; short of all of it, never rounded up to 100%."""
    if share >= 1:
        return f"{share:.0%}"
    digits = 0 if share < 0.99 else 2
    return f"{math.floor(share * 10 ** (digits + 2)) / 10 ** (digits + 2):.{digits}%}"


def exact_text(outcome: Outcome) -> str:
    return "yes" if outcome.exact else f"no ({share_text(outcome.share)} stored)"


def events_per_invocation(outcome: Outcome, sdk: bool) -> float:
    """Distinct events per invocation: the stored ones (new ids) for ours (every one is
    stored once it drained), one per track() call for doow-track (its strategy)."""
    made = outcome.calls if sdk else outcome.stored_events
    return made / outcome.invocations if outcome.invocations else 0.0


def goal_text(workload: Workload, outcome: Outcome) -> str:
    if workload.per_invocation:
        ratio = events_per_invocation(outcome, sdk=False)
        return f"<= 1/invocation: {ratio:.2f}, {'met' if ratio <= 1 else 'NOT met'}"
    if workload.goal is None:
        return ""
    met = outcome.peak_offered <= workload.goal
    return f"<= {workload.goal:,}/min: {'met' if met else 'NOT met'}"


def row(workload: Workload, label: str, outcome: Outcome, sdk: bool) -> list[str]:
    return [
        workload.title if not sdk else "",
        label,
        f"{outcome.peak_offered:,}",
        f"{outcome.peak_stored:,}",
        f"{outcome.offered:,}",
        f"{outcome.duplicates:,}",
        f"{outcome.rate_limited:,}",
        exact_text(outcome),
        drain_text(outcome, sdk),
        f"{BUDGET:,}",
        "" if sdk else goal_text(workload, outcome),
    ]


def add_records(
    rec: Recorder,
    plan: Plan,
    workload: Workload,
    ours: Outcome,
    alternatives: dict[str, Outcome],
    sdk_name: str,
) -> None:
    params: dict[str, Any] = {
        "budget_events_per_minute": BUDGET,
        "load_seconds": plan.load,
        "window_seconds": plan.window or 60,
        "offered_total": ours.offered,
        "stored_events_busiest_minute": ours.peak_stored,
        "stored_events_total": ours.stored_events,
        "rate_limited_requests": ours.rate_limited,
        "duplicates_offered": ours.duplicates,
        "exact": ours.exact,
        "over_budget": workload.over_budget,
        "drain_seconds": ours.drain,
        "track_calls": ours.calls,
        "minutes": ours.minutes,
        "alternatives": {
            name: {
                "offered_busiest_minute": o.peak_offered,
                "stored_busiest_minute": o.peak_stored,
                "offered_total": o.offered,
                "rate_limited_requests": o.rate_limited,
                "duplicates_offered": o.duplicates,
                "exact": o.exact,
                "stored_share": round(o.share, 4),
                "drain_seconds": o.drain,
                "projected_drain_seconds": (
                    o.projected_drain() if o.drain is None and name == SDK else None
                ),
                "watched_seconds": round(o.watched, 1),
                "track_calls": o.calls,
            }
            for name, o in alternatives.items()
        },
        "notes": ours.notes,
    }
    rec.add(
        Record(
            name=f"Doow events in the busiest minute, {workload.title}",
            unit="events/min",
            better="lower",
            ours=ours.peak_offered,
            ours_label=OURS,
            alternatives={name: o.peak_offered for name, o in alternatives.items()},
            delivered_ok=ours.exact,
            group="budget",
            params=params,
            goal=None if workload.goal is None else f"<= {workload.goal}",
            note=f"offered to a local Doow enforcing {BUDGET:,} events a minute, by its own "
            f"count; {plan.load:g} s of load"
            + ("" if plan.window is None else f", {plan.window:g} s windows (--quick)"),
        )
    )
    drains = {
        name: o.drain
        if o.drain is not None
        else (o.projected_drain() if name == SDK else o.watched)
        for name, o in alternatives.items()
    }
    rec.add(
        Record(
            name=f"backlog drain after the load stops, {workload.title}",
            unit="s",
            better="lower",
            ours=ours.drain if ours.drain is not None else ours.watched,
            ours_label=OURS,
            alternatives={k: v for k, v in drains.items() if v},
            delivered_ok=ours.exact,
            group="budget_drain",
            params={
                "drained": ours.drain is not None,
                "watched_seconds": ours.watched,
                "over_budget": workload.over_budget,
            },
            note=f"until the server's totals equal the tracked ones; {sdk_name}'s is projected "
            "from what it had not delivered, at the budget's pace, where it did not drain",
        )
    )
    if not workload.per_invocation:
        return
    rec.add(
        Record(
            name=f"Doow events per invocation, {workload.title}",
            unit="events/invocation",
            better="lower",
            ours=events_per_invocation(ours, sdk=False),
            ours_label=OURS,
            alternatives={
                name: events_per_invocation(o, sdk=name == SDK) for name, o in alternatives.items()
            },
            delivered_ok=ours.exact,
            group="budget_invocation",
            params={
                "invocations": ours.invocations,
                "stored_events": ours.stored_events,
                "over_budget": workload.over_budget,
            },
            goal="<= 1",
            note="distinct events (ours: stored ids; doow-track: one per track() call) over "
            "the invocations that billed usage; each bills one license",
        )
    )


FIRST_GROUP = ("a ours", "a sdk", "d ours", "d sdk", "b sdk")


def job(name: str, plan: Plan, first: float, second: float) -> Outcome:
    """One run, by name: "a ours", "a sdk", "d ours", "d sdk" (from `first`), "b ours",
    "c direct", "c gateway" (from `second`); "b sdk" runs with the first group (its
    hundreds of simulated environments would otherwise take the CPU ours need)."""
    runs: dict[str, Callable[[], Outcome]] = {
        "a ours": lambda: service_run("ours", plan.workers, False, plan, first),
        "a sdk": lambda: service_run("doow-track", plan.workers, False, plan, first),
        "d ours": lambda: service_run("ours", plan.fleet, True, plan, first),
        "d sdk": lambda: service_run("doow-track", plan.fleet, False, plan, first),
        "b ours": lambda: lambda_run("direct", plan, second),
        "b sdk": lambda: lambda_run("doow-track", plan, first),
        "c direct": lambda: lambda_run("extension", plan, second),
        "c gateway": lambda: lambda_run("gateway", plan, second),
    }
    return runs[name]()


def _job_process(
    name: str, plan: Plan, first: float, second: float, setup_at: float, results: Any
) -> None:
    """A run in its own process (its Lambda runtime API servers and doow-track's
    environments then have a core of their own to compete for, not this one's GIL)."""
    time.sleep(max(0.0, setup_at - time.time()))
    try:
        results.put((name, job(name, plan, first, second), None))
    except BaseException as exc:
        results.put((name, None, f"{type(exc).__name__}: {exc}"))


def main() -> None:
    args, rec = options(__doc__ or "")
    plan = QUICK if args.quick else FULL
    missing = [p for p in (COLLECTOR, EXTENSION) if not p.exists()]
    if missing and not os.environ.get("DOOW_BENCH_NO_BUILD"):
        for script in ("build.sh", "build-lambda-layer.sh"):
            subprocess.run(["bash", str(ROOT / "collector" / script)], check=True, timeout=1800)
    have_collector = COLLECTOR.exists()
    have_extension = EXTENSION.exists()
    first = time.time() + plan.setup
    if plan.align:
        first = math.ceil(first / 60) * 60
    second = first + plan.group_gap
    names = ["a ours", "a sdk", "b ours", "b sdk"]
    if have_collector:
        names += ["d ours", "d sdk"]
    if have_extension:
        names.append("c direct")
    if have_extension and have_collector:
        names.append("c gateway")
    load = os.getloadavg()
    print(
        f"{os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"load starts at {time.strftime('%H:%M:%S', time.localtime(first))} "
        f"((a), (d), doow-track's (b)) and {time.strftime('%H:%M:%S', time.localtime(second))} "
        "(doow-otel's (b), (c)), "
        f"{plan.load:g} s each",
        flush=True,
    )
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes = []
    for name in names:
        # the second group sets up during the first's load
        setup_at = 0.0 if name in FIRST_GROUP else second - plan.setup - 10
        process = context.Process(
            target=_job_process, args=(name, plan, first, second, setup_at, queue)
        )
        process.start()
        processes.append(process)
    results: dict[str, Outcome] = {}
    errors: dict[str, str] = {}
    for _ in names:
        name, outcome, error = queue.get()
        if error is not None:
            errors[name] = error
        else:
            results[name] = outcome
    for process in processes:
        process.join(30)
    for name, error in errors.items():
        print(f"{name}: failed: {error}", file=sys.stderr)
    report(rec, plan, results, have_collector, have_extension)
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    rec.write()
    if errors:
        sys.exit(1)


def report(
    rec: Recorder,
    plan: Plan,
    results: dict[str, Outcome],
    have_collector: bool,
    have_extension: bool,
) -> None:
    w, f = plan.workers, plan.fleet
    lic, rate = plan.licenses, plan.track_per_second
    inv, lam = plan.invocations_per_minute, plan.lambda_licenses
    # goals: (b) and (c) direct at most one event per invocation; for the busiest minute
    # at 60 s windows (a quick run's 2 s windows have none), (a) one event per license per
    # window per process, a gateway or a collector one per stream per window
    per_minute = plan.window is None
    service = f"{lic} licenses x 2 metrics, {rate:g} track()/s in all"
    function = f"{inv:,} invocations/min over {lam} licenses (api_calls and tokens each)"
    workloads = {
        "a": Workload(
            "a",
            f"(a) {w} workers, direct",
            f"a service of {w} worker processes, {service}, direct to Doow",
            w * lic if per_minute else None,
        ),
        "b": Workload(
            "b",
            "(b) Lambda, direct",
            f"a Lambda function, {function}, direct to Doow",
            None,
            per_invocation=True,
            over_budget=per_minute and inv > BUDGET,
        ),
        "c direct": Workload(
            "c direct",
            "(c) Lambda extension, direct",
            "the same function on the extension route (otelcol-doow layer), direct to Doow",
            None,
            per_invocation=True,
            over_budget=per_minute and inv > BUDGET,
        ),
        "c gateway": Workload(
            "c gateway",
            "(c) Lambda extension, gateway",
            "the same, the extension forwarding to a gateway (collector/gateway.yaml)",
            lam if per_minute else None,
        ),
        "d": Workload(
            "d",
            f"(d) {f} processes, collector",
            f"{f} processes, {service}, DOOW_ROUTE=collector to one otelcol-doow "
            "(otel-collector-config.yaml); doow-track: the same processes direct to Doow",
            lic if per_minute else None,
        ),
    }
    sdk_for = {"a": "a sdk", "b": "b sdk", "c direct": "b sdk", "c gateway": "b sdk", "d": "d sdk"}
    order = ["a", "b", "c direct", "c gateway", "d"]
    rows: list[list[str]] = []
    notes: list[str] = []
    for key in order:
        ours_key = f"{key} ours" if key in ("a", "b", "d") else key
        ours = results.get(ours_key)
        if ours is None:
            why = (
                "failed"
                if (key[0] == "d" and have_collector) or (key[0] == "c" and have_extension)
                else "not built (collector/_build): left out"
            )
            rows.append([workloads[key].title, f"({why})", *[""] * 9])
            continue
        workload = workloads[key]
        rows.append(row(workload, "doow-otel", ours, sdk=False))
        notes += [f"{workload.title}, doow-otel: {n}" for n in ours.notes]
        sdk = results.get(sdk_for[key])
        alternatives: dict[str, Outcome] = {}
        if sdk is not None:
            if key in ("a", "b", "d"):
                rows.append(row(workload, SDK_SHORT, sdk, sdk=True))
                notes += [f"{workload.title}, doow-track: {n}" for n in sdk.notes]
            alternatives[SDK] = sdk
        if key == "c gateway" and "c direct" in results:
            alternatives["doow-otel, the extension direct to Doow"] = results["c direct"]
        add_records(rec, plan, workload, ours, alternatives, "doow-track")
    title = (
        f"Doow events a minute against its budget ({BUDGET:,} a minute), by the local "
        f"server's count: {plan.load:g} s of load"
        + (
            " from a minute's start; 60 s windows (the defaults)"
            if plan.window is None
            else f"; QUICK RUN: {plan.window:g} s windows, small counts (no per-minute figures)"
        )
    )
    print(f"\n{title}")
    for key in order:
        print(f"  {workloads[key].title}: {workloads[key].load}")
    print(f"  doow-otel: {OURS}, as a user makes it; doow-track: {SDK}, its defaults")
    table(
        "",
        [
            "workload",
            "sender",
            "offered/min",
            "stored/min",
            "offered",
            "dup",
            "429s",
            "totals exact",
            "drain",
            "budget/min",
            "goal",
        ],
        rows,
    )
    print(
        "\noffered/min, stored/min: the busiest calendar minute (offered: the events of every "
        "request, 429s included; stored: new ids); offered: over the whole run; dup: events "
        "offered again after they were stored (they cost budget and bill nothing); 429s: "
        "requests refused over the budget. drain: from the load's end until the server's "
        "totals equal the tracked ones per metric and license; doow-track's is projected "
        "(what it had not delivered at one event per call, at the budget's pace, a lower "
        f"bound) after watching it {plan.sdk_watch:g} s. Lambda: after the load one "
        "invocation a second that bills nothing (a frozen environment sends nothing)."
    )
    for note in notes:
        print(f"  {note}")


if __name__ == "__main__":
    main()
