"""``kt gateway run --workers N``: N worker processes on one port, one audit log.

The supervisor (the ``kt gateway run`` process) validates the config, binds the listening
socket(s) once, prints the banner, opens the one audit sink and starts N workers (fresh
interpreters: ``python -m keeptrusts.server.workers``, never a fork of a threaded
process). Each worker inherits the bound listening socket and serves the full aiohttp
application on it (``web.SockSite``); the kernel hands each new connection to one of them,
so the port is never half-bound and a worker restart never closes it.

Audit: workers never open the store (one hash chain per log, one writer). Each has a
:class:`~keeptrusts.audit.remote.RemoteSink` sending its events over a Unix socket to the
supervisor, which queues them on its real :class:`~keeptrusts.audit.sink.AuditSink` in
each worker's order and acknowledges strict commits once committed (see
``keeptrusts.audit.remote``).

Signals to the supervisor: SIGINT/SIGTERM stop accepting, tell every worker to drain
(SIGTERM: it finishes its in-flight requests and flushes its sink), close the sink once all
workers have exited, exit 0. SIGHUP reloads every worker; a reload through one worker's
admin API is passed on to the others. A worker that dies is logged and restarted (backoff
0.25 s doubling to 10 s, reset after a minute of uptime); events it had already sent are
kept. Workers ignore SIGINT (a terminal's Ctrl-C reaches the supervisor, which drains
them) and drain and exit by themselves if the supervisor disappears.

Per worker, not per gateway: ``/metrics``, ``/health``'s request count, the admin API's
reload history, the circuit breakers and in-process caches. Limit counters would be per
worker too, so ``--workers`` > 1 with a ``limits`` section refuses to start unless the
counters are in Redis. Responses carry ``x-keeptrusts-worker: <pid>``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from keeptrusts.audit.remote import RemoteSink, SinkHost, encode, recv_frame
from keeptrusts.server.gctune import tune_gc

if TYPE_CHECKING:
    from keeptrusts.audit.sink import AuditSink
    from keeptrusts.runtime import Gateway

log = logging.getLogger("keeptrusts.workers")

WORKER_HEADER = "x-keeptrusts-worker"
BACKLOG = 2048
RESTART_MIN, RESTART_MAX = 0.25, 10.0
STABLE_AFTER = 60.0  # seconds of uptime after which a worker's restart backoff resets
STATUS_INTERVAL = 0.25  # how often workers learn the real sink's state (overload, health)
KILL_GRACE = 15.0  # beyond --drain-seconds, before a draining worker is killed
EXIT_CONFIG = 3  # a worker's exit status when it cannot load the config


def bind_sockets(host: str, port: int, *, backlog: int = BACKLOG) -> list[socket.socket]:
    """Listening sockets for ``host:port`` (every address it resolves to), as asyncio's
    ``create_server`` would bind them."""
    infos = socket.getaddrinfo(
        host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
    )
    seen: set[tuple[int, Any]] = set()
    socks: list[socket.socket] = []
    try:
        for family, kind, proto, _, addr in infos:
            if (family, addr) in seen:
                continue
            seen.add((family, addr))
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
            sock.listen(backlog)
    except OSError:
        for s in socks:
            s.close()
        raise
    return socks


# -- the supervisor --------------------------------------------------------------------------


@dataclass(eq=False)
class _Worker:
    index: int
    proc: subprocess.Popen
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    started: float
    ready: bool = False

    @property
    def name(self) -> str:
        return f"worker {self.index} (pid {self.proc.pid})"


class Supervisor:
    def __init__(
        self,
        sink: AuditSink,
        socks: list[socket.socket],
        spec: dict[str, Any],
        *,
        workers: int,
        drain: float,
    ) -> None:
        self.host = SinkHost(sink)
        self.socks = socks
        self.spec = spec
        self.n = workers
        self.drain = drain
        self.live: dict[int, _Worker] = {}
        self.stopping = False
        self.restarts = 0
        self._stop = asyncio.Event()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._sighup)
        slots = [asyncio.ensure_future(self._slot(i)) for i in range(1, self.n + 1)]
        status = asyncio.ensure_future(self._push_status())
        await self._stop.wait()
        print("shutting down: draining in-flight requests", flush=True)
        self.stopping = True
        for sock in self.socks:  # the workers' copies keep listening until they drain
            sock.close()
        for w in list(self.live.values()):
            with contextlib.suppress(ProcessLookupError):
                w.proc.send_signal(signal.SIGTERM)
        _, pending = await asyncio.wait(slots, timeout=self.drain + KILL_GRACE)
        code = 0
        if pending:
            code = 1
            for w in list(self.live.values()):
                log.error("%s did not drain within %.0fs; killing it", w.name, self.drain)
                with contextlib.suppress(ProcessLookupError):
                    w.proc.kill()
            await asyncio.wait(pending, timeout=10.0)
        status.cancel()
        return code

    def _sighup(self) -> None:
        n = self._broadcast({"t": "reload", "who": "SIGHUP"})
        print(f"reload requested (SIGHUP): passed to {n} worker(s)", flush=True)

    def _broadcast(self, msg: dict[str, Any], *, skip: _Worker | None = None) -> int:
        frame = encode(msg)
        n = 0
        for w in list(self.live.values()):
            if w is not skip and not w.writer.is_closing():
                w.writer.write(frame)
                n += 1
        return n

    def _control(self, w: _Worker, msg: dict[str, Any]) -> None:
        kind = msg.get("t")
        if kind == "ready":
            w.ready = True
            log.info("%s serving", w.name)
        elif kind == "reload":
            who = f"supervisor ({msg.get('who')}, via worker pid {w.proc.pid})"
            self._broadcast({"t": "reload", "who": who}, skip=w)
        else:
            log.warning("%s sent an unknown control message %r", w.name, kind)

    async def _push_status(self) -> None:
        while True:
            await asyncio.sleep(STATUS_INTERVAL)
            try:
                frame = self.host.status_frame()
            except Exception:
                log.exception("cannot read the audit sink status")
                continue
            for w in list(self.live.values()):
                transport = w.writer.transport
                if not w.writer.is_closing() and transport.get_write_buffer_size() < 1 << 20:
                    w.writer.write(frame)

    async def _slot(self, index: int) -> None:
        """Keep worker ``index`` running until the supervisor stops."""
        delay = RESTART_MIN
        while not self.stopping:
            try:
                w = await self._spawn(index)
            except OSError as exc:
                log.error("cannot start worker %d: %s", index, exc)
                await self._pause(delay)
                delay = min(delay * 2, RESTART_MAX)
                continue
            self.live[index] = w
            if self.stopping:  # started while the stop was being handled
                with contextlib.suppress(ProcessLookupError):
                    w.proc.send_signal(signal.SIGTERM)
            try:
                await self.host.serve(
                    w.reader, w.writer, lambda msg, w=w: self._control(w, msg), name=w.name
                )
            finally:
                w.writer.close()
            code = await self._reap(w)
            del self.live[index]
            if self.stopping:
                if code not in (0, -signal.SIGTERM):
                    log.warning("%s exited with %s while draining", w.name, _status(code))
                break
            self.restarts += 1
            if time.monotonic() - w.started >= STABLE_AFTER:
                delay = RESTART_MIN
            hint = " (it cannot load the config)" if code == EXIT_CONFIG else ""
            log.log(
                logging.WARNING if code == 0 else logging.ERROR,
                "%s exited with %s%s; restarting in %.2fs",
                *(w.name, _status(code), hint, delay),
            )
            await self._pause(delay)
            delay = min(delay * 2, RESTART_MAX)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _spawn(self, index: int) -> _Worker:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listen = [s.fileno() for s in self.socks]
            cmd = [sys.executable, "-m", "keeptrusts.server.workers",
                   "--channel-fd", str(theirs.fileno()),
                   "--listen-fds", ",".join(map(str, listen))]  # fmt: skip
            proc = subprocess.Popen(
                cmd, pass_fds=(theirs.fileno(), *listen), stdin=subprocess.DEVNULL
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        writer.write(encode({"t": "spec", **self.spec, "index": index}))
        return _Worker(index, proc, reader, writer, time.monotonic())

    async def _reap(self, w: _Worker) -> int:
        """Wait for a worker whose channel closed; kill it if it lingers while serving."""
        deadline = time.monotonic() + 5.0
        while (code := w.proc.poll()) is None:
            if not self.stopping and time.monotonic() > deadline:
                log.error("%s closed its audit channel but kept running; killing it", w.name)
                with contextlib.suppress(ProcessLookupError):
                    w.proc.kill()
                deadline = float("inf")
            await asyncio.sleep(0.05)
        return code


def _status(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"status {code}"


def run_supervisor(
    gateway: Gateway,
    *,
    host: str,
    port: int,
    policy_config: list[str],
    workers: int,
    drain: float,
    log_level: str,
    banner: Any,
) -> int:
    """Serve ``gateway``'s config on ``workers`` processes; return the exit status.

    ``gateway`` was built only to validate the config and print the banner: it is
    released here, the workers build their own.
    """
    from keeptrusts.audit.sink import open_sink
    from keeptrusts.runtime import DEFAULT_RETENTION_DAYS

    settings = gateway.settings
    try:
        socks = bind_sockets(host, port)
    except OSError as exc:
        _release(gateway)
        print(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    banner(gateway, host, port)
    print(
        f"  workers: {workers} processes on one socket; this process (pid {os.getpid()}) "
        "writes the audit log",
        flush=True,
    )
    retention = gateway.audit_settings.get("retention_days", DEFAULT_RETENTION_DAYS)
    _release(gateway)
    try:
        sink = open_sink(
            settings.state_dir,
            retention_days=retention,
            database_url=settings.database_url,
            instance_id=settings.instance_id,
        )
    except Exception as exc:
        for s in socks:
            s.close()
        print(f"error: cannot open the audit log: {exc}", file=sys.stderr)
        return 1
    spec = {
        "policy_config": list(policy_config),
        "state_dir": str(settings.state_dir),
        "fail_mode": settings.fail_mode,
        "max_body_bytes": settings.max_body_bytes,
        "redis_url": settings.redis_url,
        "otel": settings.otel,
        "database_url": settings.database_url,
        "instance_id": settings.instance_id,
        "workers": workers,
        "drain_seconds": drain,
        "log_level": log_level,
    }
    print(f"  listening on http://{host}:{port}", flush=True)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is optional off Linux/macOS
        pass
    code = 1
    try:
        code = asyncio.run(Supervisor(sink, socks, spec, workers=workers, drain=drain).run())
    finally:
        for s in socks:
            s.close()
        sink.close()  # every worker has exited: all their events are queued here
    print("stopped", flush=True)
    return code


def _release(gateway: Gateway) -> None:
    """Free what building the validation gateway opened (no loop, nothing started)."""
    if gateway.tracing is not None:
        with contextlib.suppress(Exception):
            gateway.tracing.shutdown()
    gateway.executor.shutdown(wait=False, cancel_futures=True)
    with contextlib.suppress(Exception):
        gateway.keys.close()


# -- a worker --------------------------------------------------------------------------------


def worker_main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the supervisor drains us
    parser = argparse.ArgumentParser(prog="keeptrusts.server.workers")
    parser.add_argument("--channel-fd", type=int, required=True)
    parser.add_argument("--listen-fds", required=True)
    args = parser.parse_args(argv)
    channel = socket.socket(fileno=args.channel_fd)
    spec = recv_frame(channel)
    if spec is None or spec.get("t") != "spec":
        print("worker: no spec from the supervisor", file=sys.stderr)
        return 2
    index = spec["index"]
    logging.basicConfig(
        level=str(spec.get("log_level") or "INFO").upper(),
        format=f"%(levelname)s %(name)s [worker {index} pid %(process)d] %(message)s",
    )
    from keeptrusts.audit.pgdb import DatabaseError
    from keeptrusts.config.load import ConfigError, load_or_raise
    from keeptrusts.runtime import Gateway, NotImplementedPolicy, Settings, workers_limits_problem
    from keeptrusts.server.admin import load_or_create_admin_token
    from keeptrusts.tracing import TracingUnavailable

    state_dir = Path(spec["state_dir"])
    settings = Settings(
        state_dir=state_dir,
        fail_mode=spec["fail_mode"],
        max_body_bytes=spec["max_body_bytes"],
        admin_token=load_or_create_admin_token(state_dir),
        redis_url=spec.get("redis_url"),
        otel=spec.get("otel"),
        database_url=spec.get("database_url"),
        instance_id=spec.get("instance_id"),
        workers=spec["workers"],
    )
    try:
        config, _ = load_or_raise(spec["policy_config"])
        refusal = workers_limits_problem(config, settings)
        if refusal is not None:
            raise ConfigError(refusal)
        gateway = Gateway(config, settings)
    except (ConfigError, NotImplementedPolicy, TracingUnavailable, DatabaseError) as exc:
        print(f"worker {index}: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_CONFIG
    socks = [socket.socket(fileno=int(fd)) for fd in args.listen_fds.split(",") if fd]
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    asyncio.run(_serve_worker(gateway, channel, socks, index, float(spec["drain_seconds"])))
    return 0


async def _serve_worker(
    gateway: Gateway, channel: socket.socket, socks: list[socket.socket], index: int, drain: float
) -> None:
    from keeptrusts.server.app import build_app

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reloads: set[asyncio.Task] = set()
    pid = os.getpid()

    def reload(who: str) -> None:
        task = asyncio.ensure_future(_reload(gateway, who, index))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    def control(msg: dict[str, Any]) -> None:
        if msg.get("t") == "reload":
            reload(str(msg.get("who") or "supervisor"))

    def lost(reason: str) -> None:
        if not stop.is_set():
            log.critical("the supervisor is gone (%s): draining and exiting", reason)
            stop.set()

    sink = RemoteSink(
        channel,
        state_dir=gateway.settings.state_dir,
        database_url=gateway.settings.database_url,
        on_control=lambda msg: loop.call_soon_threadsafe(control, msg),
        on_lost=lambda reason: loop.call_soon_threadsafe(lost, reason),
    )
    gateway.audit = sink

    def forward_reload(who: str, ok: bool) -> None:
        # A reload through this worker's admin API: the others reload too.
        if ok and who.startswith("admin-api"):
            sink.send_control({"t": "reload", "who": who})

    gateway.on_reload = forward_reload
    app = build_app(gateway)
    pid_header = str(pid)

    async def tag(_request: web.Request, response: web.StreamResponse) -> None:
        response.headers[WORKER_HEADER] = pid_header

    app.on_response_prepare.append(tag)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: reload("SIGHUP"))
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=drain)
    await runner.setup()
    for sock in socks:
        await web.SockSite(runner, sock, backlog=BACKLOG).start()
    tune_gc()  # the gateway is built: its objects live until exit
    sink.send_control({"t": "ready", "pid": pid})
    await stop.wait()
    # Stops accepting, waits up to ``drain`` for in-flight requests, then closes the
    # gateway: its RemoteSink sends what is left and waits for the supervisor's commit.
    await runner.cleanup()


async def _reload(gateway: Gateway, who: str, index: int) -> None:
    ok, problems = await gateway.reload(who=who)
    for p in problems:
        print(f"worker {index}: {p}", file=sys.stderr)
    if ok:
        print(f"worker {index}: reloaded: {gateway.config.pack}", flush=True)
    else:
        print(f"worker {index}: reload refused: the running config is unchanged",
              file=sys.stderr, flush=True)  # fmt: skip


if __name__ == "__main__":
    sys.exit(worker_main())
