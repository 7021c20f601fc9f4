"""The admin API (``/keeptrusts/...``), behind ``Authorization: Bearer <admin token>``.

* ``GET /keeptrusts/events``: audit events, newest first; query parameters ``since``,
  ``until`` (``5m``/``1h``/``2d`` or RFC 3339), ``verdict``, ``model``, ``limit`` (default 50,
  at most 10000), and for paging ``after_seq``/``before_seq`` with ``order=asc|desc``.
* ``GET /keeptrusts/events/verify``: verify the hash chain of the audit log.
* ``GET /keeptrusts/config``: the running config, secrets redacted.

The admin token is ``KEEPTRUSTS_ADMIN_TOKEN`` if set, else ``<state_dir>/admin-token``
(created at first start, mode 0600): see :func:`load_or_create_admin_token`.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web

from keeptrusts.audit.query import EventQuery
from keeptrusts.errors import GatewayError, InvalidRequest
from keeptrusts.server.responses import error_response, json_response

ADMIN_TOKEN_ENV = "KEEPTRUSTS_ADMIN_TOKEN"
ADMIN_TOKEN_FILE = "admin-token"
REDACTED = "[REDACTED]"
_SECRET_KEY = re.compile(
    r"api[_-]?key|secret|token|passw(or)?d|credential|private[_-]?key|authorization|cookie",
    re.IGNORECASE,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def load_or_create_admin_token(state_dir: Path | str) -> str:
    """``$KEEPTRUSTS_ADMIN_TOKEN``, else the token in ``<state_dir>/admin-token``, created
    (random, mode 0600, never world-readable) on first use."""
    env = os.environ.get(ADMIN_TOKEN_ENV, "").strip()
    if env:
        return env
    path = Path(state_dir) / ADMIN_TOKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = "kta_" + secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        existing = path.read_text().strip()
        if existing:
            if path.stat().st_mode & 0o077:
                os.chmod(path, 0o600)
            return existing
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
    try:
        os.write(fd, (token + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return token


def add_admin_routes(app: web.Application, get_gateway: Callable[[], Any] | None = None) -> None:
    """Register the admin routes on ``app`` (before any catch-all route).

    ``get_gateway()`` returns the running ``Gateway`` (default: ``app["gateway"]``); the
    handlers use its ``settings.admin_token``, ``audit`` (the ``AuditSink``) and ``config``.
    """
    getter = get_gateway or (lambda: app["gateway"])
    app.router.add_get("/keeptrusts/events", _guard(getter, events_list))
    app.router.add_get("/keeptrusts/events/verify", _guard(getter, events_verify))
    app.router.add_get("/keeptrusts/config", _guard(getter, config_view))
    app.router.add_get("/keeptrusts/providers/metrics", _guard(getter, provider_metrics))
    app.router.add_post("/keeptrusts/config/reload", _guard(getter, config_reload))
    app.router.add_get("/keeptrusts/config/history", _guard(getter, config_history))


async def config_reload(request: web.Request, gw: Any) -> web.Response:
    """Validate the config files again and swap to them atomically, or say why not."""
    who = f"admin-api ({request.remote or 'unknown'})"
    ok, problems = await gw.reload(who=who)
    lines = [str(p) for p in problems]
    if not ok:
        return error_response(
            GatewayError(
                "The new config is invalid; the running config is unchanged:\n" + "\n".join(lines),
                status=422,
                type="invalid_request_error",
                code="config_invalid",
                extra={"problems": lines},
            )
        )
    return json_response({"ok": True, "pack": str(gw.config.pack), "warnings": lines})


async def config_history(request: web.Request, gw: Any) -> web.Response:
    return json_response({"object": "list", "data": list(reversed(gw.reloads))})


async def provider_metrics(request: web.Request, gw: Any) -> web.Response:
    """Per target: requests, errors by kind, retries, latency p50/p99, in-flight, breaker."""
    return json_response(gw.router.metrics())


def _unauthorized(message: str) -> web.Response:
    return error_response(
        GatewayError(
            message,
            status=401,
            type="authentication_error",
            code="invalid_admin_token",
            headers={"WWW-Authenticate": 'Bearer realm="keeptrusts-admin"'},
        )
    )


def _guard(
    getter: Callable[[], Any], handler: Callable[[web.Request, Any], Awaitable[web.Response]]
) -> Handler:
    async def guarded(request: web.Request) -> web.StreamResponse:
        gw = getter()
        expected = getattr(getattr(gw, "settings", None), "admin_token", None)
        if not expected:
            return _unauthorized("The admin API is disabled: no admin token is configured.")
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return _unauthorized("Missing admin token: send Authorization: Bearer <token>.")
        if not hmac.compare_digest(given.strip().encode(), expected.encode()):
            return _unauthorized("Invalid admin token.")
        return await handler(request, gw)

    return guarded


def _store(gw: Any) -> Any:
    audit = getattr(gw, "audit", None)
    if audit is None:
        raise GatewayError(
            "The audit log is not enabled on this gateway.",
            status=503,
            type="service_unavailable",
            code="audit_unavailable",
        )
    return getattr(audit, "store", audit)


async def events_list(request: web.Request, gw: Any) -> web.Response:
    try:
        query = EventQuery.from_params(request.query)
    except ValueError as exc:
        return error_response(InvalidRequest(str(exc), code="invalid_query"))
    try:
        store = _store(gw)
    except GatewayError as err:
        return error_response(err)
    events = await asyncio.to_thread(store.list_events, query)
    has_more = query.limit is not None and len(events) == query.limit and query.limit > 0
    return json_response({"object": "list", "data": events, "has_more": has_more})


async def events_verify(request: web.Request, gw: Any) -> web.Response:
    try:
        store = _store(gw)
    except GatewayError as err:
        return error_response(err)
    result = await asyncio.to_thread(store.verify)
    body = {"object": "audit.verify", **result.to_dict(), "summary": result.summary()}
    stats = getattr(getattr(gw, "audit", None), "stats", None)
    if callable(stats):
        body["writer"] = stats()
    return json_response(body)


async def config_view(request: web.Request, gw: Any) -> web.Response:
    return json_response(redacted_config(gw.config))


def redacted_config(config: Any) -> dict[str, Any]:
    """The running config as JSON: pack, chain, policy settings and targets, no secrets.

    Any value under a key that looks like a secret (``api_key``, ``token``, ``password``,
    ``secret_key_ref``, …) is replaced by ``[REDACTED]``; user:password in URLs too.
    Environment values are never read here; only the *name* of a key variable is shown.
    """
    pack = config.pack
    return {
        "object": "config",
        "pack": {"name": pack.name, "version": pack.version, "enabled": pack.enabled},
        "policies": {"chain": list(config.chain)},
        "policy": {name: _redact(block) for name, block in config.policy.items()},
        "providers": {
            "targets": [
                {
                    "id": t.id,
                    "provider": t.provider,
                    "model": t.model,
                    "base_url": _redact_url(t.base_url),
                    "status": t.status(),
                    "aliases": list(t.aliases),
                    "weight": t.weight,
                    "api_key": REDACTED if t.api_key else None,
                    "key_env": t.key_env,
                }
                for t in config.targets
            ],
            "routing": _redact(config.routing),
        },
    }


def _redact(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            str(k): (REDACTED if _SECRET_KEY.search(str(k)) and v is not None else _redact(v))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_redact(v) for v in value]
    if isinstance(value, str) and "://" in value:
        return _redact_url(value)
    return value


def _redact_url(url: str | None) -> str | None:
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{REDACTED}@{host}"))
