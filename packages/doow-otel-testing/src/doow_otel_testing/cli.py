"""The `doow-local` command: the local Doow-compatible server and the demo."""

from __future__ import annotations

import argparse
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
        from doow_otel_testing.demo import run

        return run(keep_serving=args.keep_serving)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
