"""Who may bill which license (issue 24, point 1): a caller's baggage never chooses it.

The stock Flask and FastAPI instrumentors accept W3C baggage from any caller. A request
carrying `baggage: doow.license_id=lic_victim` must bill what the application's code
says (`default_license_id`, `bill_to()`), never the victim; baggage bills only where the
application opts in (`trust_baggage()`), and `bill_to(propagate=True)` carries the
license to the application's own downstream services. Judged by what the local server
stored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import context, propagate, trace
from opentelemetry.sdk.trace import TracerProvider

import doow_otel
from doow_otel import DoowClient, DoowTracker
from doow_otel.otel import baggage as license_context
from doow_otel_testing import LocalDoow

HOSTILE = {"baggage": "doow.license_id=lic_victim"}


@pytest.fixture(autouse=True)
def baggage_untrusted() -> Iterator[None]:
    doow_otel.trust_baggage(False)
    yield
    doow_otel.trust_baggage(False)


def _handle(tracker: DoowTracker, tracer: trace.Tracer, customer: str | None) -> str:
    """What the endpoint does: one api_call tracked, one GenAI span (500 input tokens)."""

    def work() -> None:
        tracker.track(metric="api_calls", quantity=1)
        with tracer.start_as_current_span("chat gpt-4o") as span:
            span.set_attributes({"gen_ai.system": "openai", "gen_ai.usage.input_tokens": 500})

    if customer is None:
        work()
    else:
        with doow_otel.bill_to(customer):
            work()
    return "ok"


def _flask_app(tracker: DoowTracker, tracing: TracerProvider) -> Any:
    from flask import Flask, request
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    app = Flask("billing")
    tracer = tracing.get_tracer("app")

    @app.route("/chat")
    def chat() -> str:
        return _handle(tracker, tracer, request.args.get("customer"))

    FlaskInstrumentor().instrument_app(app, tracer_provider=tracing)
    return app.test_client()


def _fastapi_app(tracker: DoowTracker, tracing: TracerProvider) -> Any:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    app = FastAPI()
    tracer = tracing.get_tracer("app")

    @app.get("/chat")
    def chat(customer: str | None = None) -> str:
        return _handle(tracker, tracer, customer)

    FastAPIInstrumentor.instrument_app(app, tracer_provider=tracing)
    return TestClient(app)


APPS = {"flask": _flask_app, "fastapi": _fastapi_app}


@pytest.fixture
def served(local_doow: LocalDoow, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    client = DoowClient(local_doow.api_key, endpoint=local_doow.url, spool=tmp_path / "spool")
    tracing = TracerProvider()
    tracker = DoowTracker(
        client=client,
        default_license_id="lic_owner",
        tracer_provider=tracing,
        flush_interval=3600,
        handle_sigterm=False,
    )
    http = APPS[request.param](tracker, tracing)

    def get(path: str, headers: dict[str, str] | None = None) -> None:
        answer = http.get(path, headers=headers or {})
        assert answer.status_code == 200
        assert tracker.flush(5.0)

    yield get
    tracker.shutdown()
    tracing.shutdown()
    client.close()


@pytest.mark.parametrize("served", list(APPS), indirect=True)
def test_a_callers_baggage_never_chooses_the_license(served: Any, local_doow: LocalDoow) -> None:
    served("/chat", HOSTILE)
    served("/chat", HOSTILE)
    assert local_doow.total("api_calls", "lic_victim") == 0
    assert local_doow.total("input_tokens", "lic_victim") == 0
    assert local_doow.total("api_calls", "lic_owner") == 2  # the application's default
    assert local_doow.total("input_tokens") == 0  # as without the header: no license on it


@pytest.mark.parametrize("served", list(APPS), indirect=True)
def test_the_license_set_in_code_bills(served: Any, local_doow: LocalDoow) -> None:
    served("/chat?customer=lic_acme", HOSTILE)
    assert local_doow.total("api_calls", "lic_acme") == 1
    assert local_doow.total("input_tokens", "lic_acme") == 500
    assert local_doow.total("api_calls", "lic_victim") == 0


@pytest.mark.parametrize("served", list(APPS), indirect=True)
def test_trusting_baggage_is_an_explicit_opt_in(served: Any, local_doow: LocalDoow) -> None:
    doow_otel.trust_baggage()  # every caller is the application's own (docs/security.md)
    served("/chat", {"baggage": "doow.license_id=lic_internal"})
    assert local_doow.total("api_calls", "lic_internal") == 1
    assert local_doow.total("input_tokens", "lic_internal") == 500


def test_trust_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry import baggage

    monkeypatch.setattr(license_context, "_trusted", None)
    monkeypatch.setenv("DOOW_TRUST_BAGGAGE", "true")
    token = context.attach(baggage.set_baggage("doow.license_id", "lic_internal"))
    try:
        assert license_context.license_in_context() == "lic_internal"
    finally:
        context.detach(token)


def test_bill_to_propagates_only_when_asked() -> None:
    carrier: dict[str, str] = {}
    with doow_otel.bill_to("lic_acme"):
        propagate.inject(carrier)
        assert license_context.license_in_context() == "lic_acme"
    assert "lic_acme" not in carrier.get("baggage", "")
    with doow_otel.bill_to("lic_acme", propagate=True):
        propagate.inject(carrier)
    assert "doow.license_id=lic_acme" in carrier["baggage"]
    with pytest.raises(doow_otel.InvalidEvent, match="license_id"):
        doow_otel.set_license("")


def test_a_middleware_that_checked_the_caller_can_promote_its_baggage(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    """The per-request opt-in: code that authenticated the caller decides."""
    from flask import Flask, g, request
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    client = DoowClient(local_doow.api_key, endpoint=local_doow.url, spool=tmp_path / "spool")
    tracing = TracerProvider()
    tracker = DoowTracker(client=client, tracer_provider=tracing, handle_sigterm=False)
    app = Flask("internal")
    FlaskInstrumentor().instrument_app(app, tracer_provider=tracing)

    @app.before_request
    def choose_license() -> None:
        if request.headers.get("X-Internal-Token") == "t0k":  # a caller of your own
            license_id = doow_otel.baggage_license()
            if license_id:
                g.doow = context.attach(doow_otel.set_license(license_id))

    @app.teardown_request
    def release(_: object) -> None:
        if "doow" in g:
            context.detach(g.doow)

    @app.route("/work")
    def work() -> str:
        tracker.track(
            metric="api_calls", quantity=1, **({} if "doow" in g else {"license_id": "lic_anon"})
        )
        return "ok"

    http = app.test_client()
    http.get("/work", headers={"baggage": "doow.license_id=lic_b", "X-Internal-Token": "t0k"})
    http.get("/work", headers={"baggage": "doow.license_id=lic_victim"})
    assert tracker.flush(5.0)
    assert local_doow.total("api_calls", "lic_b") == 1
    assert local_doow.total("api_calls", "lic_victim") == 0
    assert local_doow.total("api_calls", "lic_anon") == 1
    tracker.shutdown()
    tracing.shutdown()
    client.close()
