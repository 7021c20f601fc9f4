"""The web console at ``/console``: what the gateway blocked and why, for people.

Served by the gateway itself, behind the admin token (a login form; the token is never put in
a URL), rendered on the server from templates and two static files shipped in this package:
no build step, no CDN, works offline.

* ``/console``: overview (decisions over time, by policy/model/target/role, health).
* ``/console/events``: the audit log, filtered and paged; ``/console/events/<seq>``: one event.
* ``/console/integrity``: verify the hash chain.
* ``/console/export?format=csv|jsonl&…``: the current filter as a file.
* ``/console/config``: the running pack with secrets redacted, and the reload history.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from keeptrusts.console.views import Console, redirect

__all__ = ["CONSOLE_KEY", "Console", "add_console_routes"]

CONSOLE_KEY = web.AppKey("keeptrusts_console", Console)


def add_console_routes(
    app: web.Application, get_gateway: Callable[[], Any] | None = None
) -> Console:
    """Register the console on ``app`` (before any catch-all route); returns its state.

    ``get_gateway()`` returns the running ``Gateway`` (default: ``app["gateway"]``).
    """
    console = Console(get_gateway or (lambda: app["gateway"]))
    app[CONSOLE_KEY] = console
    add = app.router.add_route
    page = console.page
    add("GET", "/console", page(console.overview))
    add("GET", "/console/", _to_console)
    add("GET", "/console/login", console.login_form)
    add("POST", "/console/login", console.login)
    add("POST", "/console/logout", page(console.logout))
    add("GET", "/console/events", page(console.events))
    add("GET", r"/console/events/{seq:\d+}", page(console.event))
    add("GET", "/console/integrity", page(console.integrity))
    add("POST", "/console/integrity", page(console.integrity))
    add("GET", "/console/export", page(console.export))
    add("GET", "/console/config", page(console.config))
    add("GET", "/console/static/{name}", console.static)
    return console


async def _to_console(request: web.Request) -> web.StreamResponse:
    return redirect("/console")
