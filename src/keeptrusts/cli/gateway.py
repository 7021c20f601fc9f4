"""``kt gateway run``: load the config, bind, serve, drain on SIGINT/SIGTERM.

With ``--workers N`` (N > 1) the process supervises N workers on one socket and writes
their audit events (``keeptrusts.server.workers``); N = 1 serves here, in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from aiohttp import web

from keeptrusts import __version__
from keeptrusts.audit.pgdb import DATABASE_URL_ENV, DatabaseError
from keeptrusts.cli.common import default_state_dir, ensure_state_dir, parse_listen
from keeptrusts.config.load import ConfigError, load_or_raise
from keeptrusts.runtime import (
    DEFAULT_MAX_BODY_BYTES,
    Gateway,
    NotImplementedPolicy,
    Settings,
    workers_limits_problem,
)
from keeptrusts.server.admin import load_or_create_admin_token
from keeptrusts.server.app import build_app
from keeptrusts.server.gctune import tune_gc
from keeptrusts.tracing import TracingUnavailable

DEFAULT_LISTEN = "0.0.0.0:41002"
DEFAULT_DRAIN_SECONDS = 15.0


def add_commands(groups: argparse._SubParsersAction) -> None:
    gw = groups.add_parser("gateway", help="run the gateway")
    sub = gw.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="serve the OpenAI-compatible API with the policy chain")
    run.add_argument("--listen", default=DEFAULT_LISTEN, help="HOST:PORT (default %(default)s)")
    run.add_argument(
        "--policy-config",
        action="append",
        required=True,
        metavar="FILE",
        help="policy config; repeat to layer files (later files win, targets merge by id)",
    )
    run.add_argument(
        "--state-dir", default=None, help="local state (default $KEEPTRUSTS_HOME or ~/.keeptrusts)"
    )
    run.add_argument("--fail-mode", choices=("block", "allow"), default="block")
    run.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    run.add_argument("--drain-seconds", type=float, default=DEFAULT_DRAIN_SECONDS)
    run.add_argument(
        "--redis-url",
        default=None,
        metavar="URL",
        help="Redis for rate limits and budgets shared by a fleet "
        "(default $KEEPTRUSTS_REDIS_URL, then limits.redis_url; else counters in process)",
    )
    run.add_argument("--log-level", default=os.environ.get("KEEPTRUSTS_LOG_LEVEL", "INFO"))
    run.add_argument(
        "--otel",
        default=os.environ.get("KEEPTRUSTS_OTEL"),
        metavar="EXPORTER",
        help="OpenTelemetry traces: otlp (OTEL_EXPORTER_OTLP_* settings), console or "
        "jsonl:PATH; needs keeptrusts[otel]",
    )
    run.add_argument(
        "--database-url",
        default=None,
        metavar="URL",
        help="PostgreSQL for audit events and keys shared by a fleet (default "
        f"${DATABASE_URL_ENV}; "
        "else SQLite in the state dir); run `kt db migrate` first",
    )
    run.add_argument("--instance-id", default=None, help="this gateway's name in the audit log")
    run.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        metavar="N",
        help="serve on N processes sharing the port and one audit log (default 1: one "
        "process); N > 1 needs Redis for a `limits` section",
    )
    run.set_defaults(func=run_gateway)


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {value!r}")
    return n


def run_gateway(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s %(message)s")
    try:
        host, port = parse_listen(args.listen)
        config, problems = load_or_raise(args.policy_config)
    except (ValueError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for p in problems:
        print(p, file=sys.stderr)
    workers = getattr(args, "workers", 1)
    state_dir = ensure_state_dir(
        Path(args.state_dir).expanduser() if args.state_dir else default_state_dir()
    )
    settings = Settings(
        state_dir=state_dir,
        fail_mode=args.fail_mode,
        max_body_bytes=args.max_body_bytes,
        admin_token=load_or_create_admin_token(state_dir),
        redis_url=args.redis_url,
        otel=args.otel,
        database_url=args.database_url or os.environ.get(DATABASE_URL_ENV) or None,
        instance_id=args.instance_id,
        workers=workers,
    )
    refusal = workers_limits_problem(config, settings)
    if refusal is not None:
        print(f"error: {refusal}", file=sys.stderr)
        return 1
    try:
        gateway = Gateway(config, settings)
    except (NotImplementedPolicy, TracingUnavailable, DatabaseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if workers > 1:
        from keeptrusts.server.workers import run_supervisor

        return run_supervisor(
            gateway,
            host=host,
            port=port,
            policy_config=args.policy_config,
            workers=workers,
            drain=args.drain_seconds,
            log_level=args.log_level,
            banner=_print_banner,
        )
    _print_banner(gateway, host, port)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is optional off Linux/macOS
        pass
    try:
        asyncio.run(_serve(gateway, host, port, args.drain_seconds))
    except OSError as exc:
        print(f"error: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


def _print_banner(gateway: Gateway, host: str, port: int) -> None:
    cfg = gateway.config
    print(f"keeptrusts {__version__}: loaded declarative config {cfg.pack}", flush=True)
    for t in cfg.targets:
        print(f"  target {t.id}: provider={t.provider} model={t.model or '*'} {t.status()}")
    chain = " -> ".join(cfg.chain) if cfg.chain else "(empty)"
    print(f"  chain: {chain} (fail-mode {gateway.settings.fail_mode})")
    if gateway.limits is not None:
        print(f"  limits: {gateway.limits.describe()}")
    state = gateway.settings.state_dir
    print(
        f"  state dir: {state} (audit log audit.db; admin token in {state}/admin-token "
        "unless KEEPTRUSTS_ADMIN_TOKEN is set)",
        flush=True,
    )


def _spawn(tasks: set[asyncio.Task], coro) -> None:  # type: ignore[no-untyped-def]
    task = asyncio.ensure_future(coro)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def _reload(gateway: Gateway) -> None:
    ok, problems = await gateway.reload(who="SIGHUP")
    for p in problems:
        print(p, file=sys.stderr)
    if ok:
        print(f"reloaded: {gateway.config.pack}", flush=True)
    else:
        print("reload refused: the running config is unchanged", file=sys.stderr, flush=True)


async def _serve(gateway: Gateway, host: str, port: int, drain: float) -> None:
    app = build_app(gateway)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=drain)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=2048, reuse_address=True)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    print(f"  listening on http://{host}:{port}", flush=True)
    tune_gc()  # the gateway is built: its objects live until exit
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task] = set()
    loop.add_signal_handler(signal.SIGHUP, lambda: _spawn(reloads, _reload(gateway)))
    await stop.wait()
    print("shutting down: draining in-flight requests", flush=True)
    # cleanup() stops listening, waits up to shutdown_timeout for in-flight requests, then
    # runs the app's cleanup contexts (audit flush, connection pool close).
    await runner.cleanup()
    print("stopped", flush=True)
