"""Event filters shared by the store, the admin API and ``kt events``."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from keeptrusts.audit.chain import parse_ts

VERDICTS = ("allow", "block", "redact", "error")
MAX_LIMIT = 10_000
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(value: str, *, now: float | None = None) -> float:
    """``5m``, ``1h``, ``2d``, ``1w`` (that long ago), RFC 3339 or a date; epoch seconds.

    A timestamp without an offset, and a bare date, are taken as UTC.
    """
    text = value.strip()
    m = _DURATION.match(text)
    if m:
        ref = time.time() if now is None else now
        return ref - float(m.group(1)) * _UNIT_SECONDS[m.group(2).lower()]
    ts = parse_ts(text.replace(" ", "T", 1) if len(text) > 10 else text)
    if ts is not None:
        return ts
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"invalid time {value!r}: use a duration like 5m, 1h, 2d or an RFC 3339 time "
            "like 2026-03-20T10:30:00Z"
        ) from None
    return dt.replace(tzinfo=UTC).timestamp()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Which events to return. ``since``/``until`` are epoch seconds, inclusive."""

    since: float | None = None
    until: float | None = None
    verdict: str | None = None
    model: str | None = None
    limit: int | None = 50
    after_seq: int | None = None
    before_seq: int | None = None
    order: str = "desc"  # desc = newest first; asc = chain order

    def __post_init__(self) -> None:
        if self.order not in ("asc", "desc"):
            raise ValueError("order must be asc or desc")
        if self.limit is not None and self.limit < 0:
            raise ValueError("limit must be >= 0")

    def to_params(self) -> dict[str, str]:
        """Query-string parameters for the admin API."""
        params: dict[str, str] = {"order": self.order}
        if self.since is not None:
            params["since"] = iso(self.since)
        if self.until is not None:
            params["until"] = iso(self.until)
        if self.verdict:
            params["verdict"] = self.verdict
        if self.model:
            params["model"] = self.model
        if self.limit is not None:
            params["limit"] = str(self.limit)
        if self.after_seq is not None:
            params["after_seq"] = str(self.after_seq)
        if self.before_seq is not None:
            params["before_seq"] = str(self.before_seq)
        return params

    @classmethod
    def from_params(cls, params: dict[str, str] | object, *, default_limit: int = 50) -> EventQuery:
        """Parse admin API query parameters; raises ``ValueError`` with a readable message."""
        get = params.get  # type: ignore[attr-defined]

        def _int(name: str) -> int | None:
            raw = get(name)
            if raw in (None, ""):
                return None
            try:
                return int(raw)
            except ValueError:
                raise ValueError(f"{name} must be an integer, got {raw!r}") from None

        since = get("since")
        until = get("until")
        verdict = get("verdict") or None
        if verdict is not None and verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}")
        limit = _int("limit")
        limit = default_limit if limit is None else limit
        if not 0 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 0 and {MAX_LIMIT}")
        return cls(
            since=parse_time(since) if since else None,
            until=parse_time(until) if until else None,
            verdict=verdict,
            model=get("model") or None,
            limit=limit,
            after_seq=_int("after_seq"),
            before_seq=_int("before_seq"),
            order=get("order") or "desc",
        )


def paged(
    list_events: Callable[[EventQuery], list[dict[str, Any]]],
    *,
    since: float | None,
    until: float | None,
    after: int,
    cursor: str,
    page_size: int = 1000,
) -> Iterator[dict[str, Any]]:
    """Every event after ``after`` in ascending ``cursor`` order, read a page at a time so
    no transaction is held between pages."""
    while True:
        page = list_events(
            EventQuery(since=since, until=until, after_seq=after, order="asc", limit=page_size)
        )
        if not page:
            return
        yield from page
        after = page[-1][cursor]
