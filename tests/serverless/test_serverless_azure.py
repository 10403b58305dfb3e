"""Azure Functions: `azure-functions`' own FunctionApp indexes the wrapped functions,
real `func.HttpRequest` objects drive them, and the local server shows what arrived
by the time each call returned."""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest

from doow_otel.tracker import DoowTracker
from doow_otel_testing import LocalDoow

func = pytest.importorskip("azure.functions")


class Context(func.Context):  # type: ignore[misc]
    """What the Functions host passes as `context` (the worker builds its own)."""

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def invocation_id(self) -> str:
        return "00000000-0000-0000-0000-000000000001"

    @property
    def thread_local_storage(self) -> threading.local:
        return threading.local()

    @property
    def function_name(self) -> str:
        return self._name

    @property
    def function_directory(self) -> str:
        return "/home/site/wwwroot"

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None


def build_app(meter: DoowTracker, wrap: Callable[[Any], Any]) -> Any:
    """One v2 app; `wrap` is applied next to each `def`, as the docs say."""
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="summarize", methods=["POST"])
    @wrap
    def summarize(req: func.HttpRequest) -> func.HttpResponse:
        body = req.get_json()
        meter.track(metric="api_calls", quantity=1, license_id=body["license_id"])
        return func.HttpResponse(json.dumps({"ok": True}), mimetype="application/json")

    @app.function_name("generate")
    @app.route(route="generate/{model}", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
    @wrap
    async def generate(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        await asyncio.sleep(0)
        meter.track(
            metric="tokens",
            quantity=int(req.params["tokens"]),
            license_id=req.headers["x-license-id"],
            attribution={"model": req.route_params["model"], "function": context.function_name},
        )
        return func.HttpResponse("generated", status_code=201)

    @app.queue_trigger(arg_name="msg", queue_name="jobs", connection="AzureWebJobsStorage")
    @app.blob_output(arg_name="out", path="results/{id}", connection="AzureWebJobsStorage")
    @wrap
    def job(msg: func.QueueMessage, out: func.Out[str]) -> None:
        meter.track(metric="jobs", quantity=1, license_id="lic_queue")
        out.set("done")

    return app


def functions(app: Any) -> dict[str, Any]:
    return {f.get_function_name(): f for f in app.get_functions()}


def test_function_app_indexes_wrapped_functions_with_the_same_bindings(meter: DoowTracker) -> None:
    plain = functions(build_app(meter, lambda f: f))
    wrapped = functions(build_app(meter, meter.with_azure_function))
    assert sorted(plain) == sorted(wrapped) == ["generate", "job", "summarize"]
    for name in plain:
        assert json.loads(wrapped[name].get_function_json()) == json.loads(
            plain[name].get_function_json()
        )
        assert wrapped[name].is_http_function() == plain[name].is_http_function()
        mine, theirs = wrapped[name].get_user_function(), plain[name].get_user_function()
        assert mine is not theirs
        # the worker binds parameters by name and awaits coroutine functions
        assert inspect.signature(mine) == inspect.signature(theirs)
        assert inspect.iscoroutinefunction(mine) == inspect.iscoroutinefunction(theirs)
        assert mine.__name__ == theirs.__name__


def test_http_calls_deliver_usage_before_returning(
    meter: DoowTracker, local_doow: LocalDoow
) -> None:
    fns = functions(build_app(meter, meter.with_azure_function))
    summarize = fns["summarize"].get_user_function()
    for count in (1, 2):
        response = summarize(
            func.HttpRequest(
                "POST",
                "http://localhost:7071/api/summarize",
                headers={"content-type": "application/json"},
                body=json.dumps({"license_id": "lic_azure"}).encode(),
            )
        )
        assert response.status_code == 200 and json.loads(response.get_body()) == {"ok": True}
        assert local_doow.total("api_calls", "lic_azure") == count  # already there

    generate = fns["generate"].get_user_function()
    response = asyncio.run(
        generate(
            func.HttpRequest(
                "POST",
                "http://localhost:7071/api/generate/gpt-small?tokens=812",
                headers={"x-license-id": "lic_llm"},
                params={"tokens": "812"},
                route_params={"model": "gpt-small"},
                body=b"",
            ),
            Context("generate"),
        )
    )
    assert response.status_code == 201
    assert local_doow.total("tokens", "lic_llm") == 812
    (event,) = local_doow.events(metric="tokens", license_id="lic_llm")
    assert event["attribution"]["model"] == "gpt-small"
    assert event["attribution"]["function"] == "generate"


def test_a_queue_function_with_an_output_binding(meter: DoowTracker, local_doow: LocalDoow) -> None:
    job = functions(build_app(meter, meter.with_azure_function))["job"].get_user_function()

    class Box(func.Out):  # type: ignore[misc]  # what the host passes for an output binding
        value: str | None = None

        def set(self, value: str) -> None:
            self.value = value

        def get(self) -> str | None:
            return self.value

    box = Box()
    assert job(func.QueueMessage(body=b'{"id": "7"}'), box) is None
    assert box.value == "done"
    assert local_doow.total("jobs", "lic_queue") == 1


def test_v1_main_keeps_its_signature_and_flushes(meter: DoowTracker, local_doow: LocalDoow) -> None:
    def main(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        """The v1 model: function.json binds `req` and `context` by name."""
        meter.track(metric="api_calls", quantity=1, license_id=req.params["license"])
        return func.HttpResponse(context.function_name)

    wrapped = meter.with_azure_function(main)
    assert inspect.signature(wrapped) == inspect.signature(main)
    assert wrapped.__doc__ == main.__doc__
    response = wrapped(
        func.HttpRequest(
            "GET", "http://localhost/api/main", params={"license": "lic_v1"}, body=b""
        ),
        Context("main"),
    )
    assert response.get_body() == b"main"
    assert local_doow.total("api_calls", "lic_v1") == 1


def test_an_exception_passes_through_unchanged_after_the_flush(
    meter: DoowTracker, local_doow: LocalDoow
) -> None:
    problem = ValueError("bad input")

    @meter.with_azure_function
    async def main(req: func.HttpRequest) -> func.HttpResponse:
        meter.track(metric="api_calls", quantity=1, license_id="lic_err")
        raise problem

    with pytest.raises(ValueError) as caught:
        asyncio.run(main(func.HttpRequest("GET", "http://localhost/api/main", body=b"")))
    assert caught.value is problem
    assert local_doow.total("api_calls", "lic_err") == 1


def test_applied_above_the_app_decorators_it_says_where_it_goes(meter: DoowTracker) -> None:
    app = func.FunctionApp()
    with pytest.raises(TypeError, match="below the FunctionApp decorators"):

        @meter.with_azure_function
        @app.route(route="wrong")
        def wrong(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse("never")
