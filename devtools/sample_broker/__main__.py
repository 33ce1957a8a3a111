"""Run the sample broker: ``python -m devtools.sample_broker --port 9100``."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from .server import SampleBroker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.sample_broker",
        description="Serve the Catalog Portal sample Open Service Broker (OSB API v2.17).",
    )
    parser.add_argument("--host", default=os.environ.get("SAMPLE_BROKER_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("SAMPLE_BROKER_PORT", "9100")))
    parser.add_argument(
        "--username", default=os.environ.get("SAMPLE_BROKER_USERNAME"), help="basic-auth user (optional)"
    )
    parser.add_argument(
        "--password", default=os.environ.get("SAMPLE_BROKER_PASSWORD"), help="basic-auth password (optional)"
    )
    parser.add_argument(
        "--async-seconds",
        type=float,
        default=float(os.environ.get("SAMPLE_BROKER_ASYNC_SECONDS", "3")),
        help="how long asynchronous operations stay 'in progress' (default: 3)",
    )
    parser.add_argument(
        "--no-etag", action="store_true", help="do not send ETag/Last-Modified on the catalog"
    )
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    args = parser.parse_args(argv)
    if (args.username is None) != (args.password is None):
        parser.error("--username and --password must be given together")

    broker = SampleBroker(username=args.username, password=args.password, host=args.host, port=args.port)
    broker.async_seconds = args.async_seconds
    broker.etag_support = not args.no_etag
    broker.verbose = not args.quiet
    try:
        broker.listen()
    except OSError as exc:
        print(f"sample broker: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    auth = f" (basic auth user {args.username!r})" if args.username else " (no auth)"
    print(f"Sample OSB broker listening on {broker.url}{auth}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        broker.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
