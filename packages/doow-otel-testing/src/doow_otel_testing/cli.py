"""The `doow-local` command: the local Doow-compatible server and the demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="doow-local",
        description="Doow's ingest API on your machine, for development and tests (no account).",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    server = commands.add_parser("serve", help="run the local Doow-compatible server")
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=8787)
    server.add_argument("--db", default="doow-local.db", help="SQLite file, or :memory:")
    server.add_argument("--key", action="append", default=None, help="accepted dk_ key (repeat)")
    server.add_argument(
        "--events-per-minute",
        type=int,
        default=1000,
        help="Doow's event budget per key (default 1000, as Doow documents; 0: no limit)",
    )
    server.add_argument(
        "--daily-cap", type=int, default=None, help="events per key and UTC day (default: none)"
    )

    demo = commands.add_parser("demo", help="run the examples against the local server")
    demo.add_argument("--keep-serving", action="store_true", help="keep the server up after")

    lam = commands.add_parser(
        "lambda",
        help="run a function under AWS's Lambda emulator (aws-lambda-rie), against a local Doow",
        description="Runs FILE.py:FUNCTION under the real Lambda Runtime Interface Emulator "
        "and awslambdaric, invokes it with each --event, stops it as Lambda retires an "
        "environment, and prints what arrived. Usage goes to a local Doow started for the "
        "run, or to --endpoint with --api-key.",
    )
    lam.add_argument("handler", help="FILE.py:FUNCTION, e.g. examples/lambda/handler.py:handler")
    lam.add_argument(
        "--event", action="append", default=None, help="the event as JSON (repeat; default {})"
    )
    lam.add_argument(
        "--with-extension",
        action="store_true",
        help="run the otelcol-doow extension layer too (Linux, root): the function sends to it",
    )
    lam.add_argument("--rie", default=None, help="the aws-lambda-rie binary (default: PATH)")
    lam.add_argument("--layer", default=None, help="the extension layer zip")
    lam.add_argument("--endpoint", default=None, help="send to this Doow instead of a local one")
    lam.add_argument("--api-key", default=os.environ.get("DOOW_TRACK_API_KEY"))

    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            from doow_otel_testing.server import serve

            return serve(
                host=args.host,
                port=args.port,
                db=args.db,
                keys=args.key,
                events_per_minute=args.events_per_minute,
                daily_cap=args.daily_cap,
            )
        if args.command == "lambda":
            return _lambda(args)
        from doow_otel_testing.demo import run

        return run(keep_serving=args.keep_serving)
    except KeyboardInterrupt:
        return 130


def _lambda(args: argparse.Namespace) -> int:
    from doow_otel_testing.lambda_rie import LambdaSetupError, run

    try:
        events = [json.loads(text) for text in args.event or ["{}"]]
    except ValueError as exc:
        print(f"doow-local lambda: --event is not JSON ({exc})", file=sys.stderr)
        return 2
    try:
        return run(
            args.handler,
            events,
            with_extension=args.with_extension,
            rie=args.rie,
            layer=args.layer,
            endpoint=args.endpoint,
            api_key=args.api_key,
        )
    except LambdaSetupError as exc:
        print(f"doow-local lambda: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
