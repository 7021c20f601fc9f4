"""HTML for the console: the packaged ``string.Template`` pages and small escaping helpers.

Every value that comes from the audit log, the config or the request is escaped here
(:func:`esc`) before it is put in a template; templates only receive ready HTML.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from html import escape
from importlib import resources
from string import Template
from typing import Any
from urllib.parse import urlencode

import orjson

NAV = (
    ("overview", "/console", "Overview"),
    ("events", "/console/events", "Events"),
    ("integrity", "/console/integrity", "Integrity"),
    ("config", "/console/config", "Config"),
)
STATIC_TYPES = {"console.css": "text/css", "console.js": "text/javascript"}
DASH = "\u2013"  # en dash

# Defence in depth: events never hold secrets or personal data by construction, but free
# text shown on a page (reasons, errors) is still masked if it looks like a key or contact.
_SECRET_TEXT = re.compile(
    r"(?:\b(?:sk|rk|pk|gsk|kta|xox[abp])[-_][A-Za-z0-9_\-]{8,}|\bBearer\s+[A-Za-z0-9._\-]{8,}"
    r"|\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b)"
)
_SECRET_KEY = re.compile(
    r"api[_-]?key|secret|token|passw(or)?d|credential|private[_-]?key|authorization|cookie",
    re.IGNORECASE,
)
REDACTED = "[REDACTED]"


@cache
def template(name: str) -> Template:
    text = (resources.files("keeptrusts.console") / "templates" / name).read_text("utf-8")
    return Template(text)


@cache
def static_file(name: str) -> tuple[bytes, str]:
    """(content, short hash) of a packaged static asset."""
    data = (resources.files("keeptrusts.console") / "static" / name).read_bytes()
    return data, hashlib.sha256(data).hexdigest()[:10]


def static_url(name: str) -> str:
    return f"/console/static/{name}?v={static_file(name)[1]}"


def fill(name: str, **values: Any) -> str:
    return template(name).substitute({k: str(v) for k, v in values.items()})


def esc(value: Any) -> str:
    """Escaped text; None and "" show as a dash."""
    if value is None or value == "":
        return DASH
    if isinstance(value, float):
        return escape(f"{value:g}")
    return escape(str(value))


def masked(value: Any) -> str:
    """Escaped free text with anything that looks like a key or an address masked."""
    if value is None or value == "":
        return DASH
    return escape(_SECRET_TEXT.sub(REDACTED, str(value)))


def scrub(value: Any) -> Any:
    """A JSON value with secret-looking keys and key-like strings redacted (display only)."""
    if isinstance(value, Mapping):
        return {
            str(k): REDACTED if _SECRET_KEY.search(str(k)) and v is not None else scrub(v)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return _SECRET_TEXT.sub(REDACTED, value)
    return value


def pretty_json(value: Any) -> str:
    return escape(orjson.dumps(scrub(value), option=orjson.OPT_INDENT_2).decode())


def attr(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def href(path: str, params: Mapping[str, Any] | None = None) -> str:
    """An escaped URL for an ``href`` attribute."""
    clean = {k: v for k, v in (params or {}).items() if v not in (None, "")}
    return attr(path + ("?" + urlencode(clean) if clean else ""))


def fmt_time(ts: float | None) -> str:
    if ts is None:
        return DASH
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def fmt_iso(value: Any) -> str:
    """An event timestamp (ISO 8601) as ``YYYY-MM-DD HH:MM:SS.mmm`` UTC."""
    if not isinstance(value, str):
        return esc(value)
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return esc(value)
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC)
    return escape(dt.strftime("%Y-%m-%d %H:%M:%S.") + f"{dt.microsecond // 1000:03d}")


def fmt_ms(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return DASH
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:,.1f}" if value >= 10 else f"{value:,.2f}"


def fmt_int(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else esc(value)


def fmt_duration(seconds: float) -> str:
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d {h}h"
    if h:
        return f"{h}h {m}m"
    return f"{m}m {s}s" if m else f"{s}s"


VERDICT_LABELS = {
    "allow": "Allowed",
    "block": "Blocked",
    "redact": "Redacted",
    "error": "Error",
}


def badge(verdict: Any) -> str:
    if verdict in VERDICT_LABELS:
        return f'<span class="badge badge-{verdict}">{VERDICT_LABELS[verdict]}</span>'
    if verdict in ("pass", "skipped", "log"):
        return f'<span class="badge badge-{verdict}">{escape(verdict.capitalize())}</span>'
    return f'<span class="badge badge-none">{esc(verdict)}</span>'


def status_badge(state: Any) -> str:
    """Health or breaker state: healthy/closed good, degraded/half_open warn, else bad."""
    text = str(state or "unknown")
    if text in ("healthy", "closed", "available", "ok", "disabled"):
        kind = "good"
    elif text in ("degraded", "half_open"):
        kind = "warn"
    else:
        kind = "bad"
    return f'<span class="state state-{kind}">{escape(text.replace("_", " "))}</span>'


def options(choices: Iterable[tuple[str, str]], selected: str | None) -> str:
    return "\n".join(
        f'<option value="{attr(v)}"{" selected" if v == (selected or "") else ""}>'
        f"{escape(label)}</option>"
        for v, label in choices
    )


def table(
    headers: Sequence[str | tuple[str, str]],
    rows: Iterable[Sequence[str]],
    *,
    caption: str | None = None,
    empty: str = "Nothing to show.",
    cls: str = "",
) -> str:
    """A semantic table; ``headers`` items are labels or (label, css class); cells are HTML."""
    heads = [(h, "") if isinstance(h, str) else h for h in headers]
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            klass = _cls(heads[i][1])
            if i == 0:
                cells.append(f'<th scope="row"{klass}>{cell}</th>')
            else:
                cells.append(f"<td{klass}>{cell}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not body:
        return f'<p class="empty">{escape(empty)}</p>'
    cap = f'<caption class="visually-hidden">{escape(caption)}</caption>' if caption else ""
    head = "".join(f'<th scope="col"{_cls(c)}>{escape(h)}</th>' for h, c in heads)
    return (
        f'<table class="{cls}">{cap}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _cls(name: str) -> str:
    return f' class="{name}"' if name else ""


def dl(items: Iterable[tuple[str, str]]) -> str:
    """A description list; values are HTML."""
    return (
        '<dl class="kv">' + "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"
    )


def nav(active: str, csrf: str) -> str:
    current = ' aria-current="page"'
    items = "\n".join(
        f'<li><a href="{url}"{current if key == active else ""}>{label}</a></li>'
        for key, url, label in NAV
    )
    return fill("nav.html", items=items, csrf=attr(csrf))


def page(
    *,
    title: str,
    main: str,
    active: str = "",
    csrf: str | None = None,
    flash: str = "",
    footer: str = "",
    body_class: str = "",
) -> str:
    return fill(
        "layout.html",
        title=escape(title),
        css=static_url("console.css"),
        js=static_url("console.js"),
        body_class=body_class,
        nav=nav(active, csrf) if csrf is not None else "",
        flash=flash,
        main=main,
        footer=footer or "Keeptrusts gateway console · all times UTC",
    )


def notice(text_html: str, kind: str = "info") -> str:
    role = "alert" if kind == "error" else "status"
    return f'<div class="notice notice-{kind}" role="{role}">{text_html}</div>'
