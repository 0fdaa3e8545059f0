"""`grouper serve`: the HTTP server (uvicorn running grouper.serve.app)."""
from __future__ import annotations

import argparse
import os
from datetime import date
from decimal import Decimal
from pathlib import Path


def _pack(text: str):
    """PACK or FROM=PACK (FROM a date: the pack applies to discharges from that day)."""
    from .service import PackSpec

    start, sep, path = text.partition("=")
    if sep and len(start) == 10 and start[4] == "-":
        try:
            return PackSpec(Path(path), date.fromisoformat(start))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{start!r} is not a date (YYYY-MM-DD)") from None
    return PackSpec(Path(text))


def add_serve_parser(sub) -> None:
    from ..options import at_least as _at_least  # noqa: N813
    from ..options import number_at_least

    positive_decimal = number_at_least(0, exclusive=True, exact=True)

    s = sub.add_parser("serve", help="serve pre-grouping (预分组), explain, what-if and 预结算 over HTTP, with a page")
    s.add_argument("--scheme", action="append", type=_pack, default=[], metavar="[FROM=]PACK",
                   help="a DRG or DIP pack to serve (repeatable); FROM=PACK serves it for discharges from that date, "
                        "e.g. --scheme 2025-01-01=packs/chs-drg-2.0 (default: the shipped demo scheme)")
    s.add_argument("--by-date", action="append", type=Path, default=[], metavar="SCHEDULE",
                   help="DRG packs by discharge date: a CSV with columns from,pack, as `grouper group --by-date` takes")
    s.add_argument("--policy", type=Path, help="settlement policy (.toml) for 预结算 estimates")
    s.add_argument("--weights", type=Path, help="weights table (drg, weight[, mean]; CSV, Parquet or Excel) for estimates (default: the pack's)")
    s.add_argument("--point-value", type=positive_decimal, metavar="YUAN",
                   help="the latest point value in yuan per point for estimates (default: the policy's budget_point_value)")
    s.add_argument("--warn-at", type=positive_decimal, default=Decimal("0.8"), metavar="SHARE",
                   help="warn when the cost reaches this share of the standard or of the high line (default 0.8)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=_at_least(1), default=8000, help="port (default 8000)")
    s.add_argument("--max-body", type=_at_least(1024), default=16 << 20, metavar="BYTES",
                   help="largest request body (default 16 MiB)")
    s.add_argument("--max-cases", type=_at_least(1), default=10_000, help="most cases in one batch request (default 10,000)")
    s.add_argument("--timeout", type=number_at_least(0, exclusive=True), default=30.0, metavar="SECONDS", help="work time allowed per request (default 30)")
    s.add_argument("--threads", type=_at_least(1), default=4, help="worker threads for grouping (default 4)")
    s.add_argument("--token-file", type=Path,
                   help="file holding the bearer token of /v1/admin/reload (or set GROUPER_SERVE_TOKEN); "
                        "without one the admin endpoints refuse every request")
    s.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="allow browser pages from this origin to call the API (repeatable; default: none)")
    s.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    s.set_defaults(run=serve_command)


def serve_command(args) -> int:
    import logging

    import uvicorn

    from ..errors import InputError
    from .app import Limits, create_app
    from .service import Settings, load_state

    token = os.environ.get("GROUPER_SERVE_TOKEN") or None
    if args.token_file is not None:
        try:
            token = args.token_file.read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise InputError(f"cannot read the token file {args.token_file}: {exc.strerror or exc}") from None
    settings = Settings(tuple(args.scheme), tuple(args.by_date), args.policy, args.weights, args.point_value, args.warn_at)
    state = load_state(settings)   # a bad pack or policy stops here with its diagnostics (exit 1 / 3)
    limits = Limits(args.max_body, args.max_cases, args.timeout, token, tuple(args.cors_origin))
    app = create_app(limits=limits, state=state, threads=args.threads)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # no proxy-header middleware (the server does not trust X-Forwarded-*; it costs a call per request);
    # uvicorn's "auto" picks httptools and uvloop, both in the `serve` extra
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False,
                            timeout_graceful_shutdown=max(args.timeout, 1.0), server_header=False,
                            limit_concurrency=1000, backlog=2048, proxy_headers=False)
    server = uvicorn.Server(config)
    # uvicorn handles SIGINT/SIGTERM itself: it stops accepting, lets the requests in flight finish, then
    # raises the signal again for the CLI's own handler; a graceful stop is reported as such.
    from ..errors import EXIT_INTERRUPTED, EXIT_TERMINATED
    from ..console import stderr_console
    from ..outputs import Terminated

    try:
        server.run()
    except Terminated:
        stderr_console().print("stopped (SIGTERM): the requests in flight were answered", markup=False)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        stderr_console().print("stopped (Ctrl-C): the requests in flight were answered", markup=False)
        return EXIT_INTERRUPTED
    return 0
