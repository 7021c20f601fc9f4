"""The console's event filter: parsed from a query string, turned back into one for links.

The same filter drives the events table, its paging links and the CSV/JSONL export, so an
export always holds exactly the events the table shows. Every store adapter applies it with
the semantics of :meth:`EventFilter.matches` (the reference implementation).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from keeptrusts.audit.chain import parse_ts
from keeptrusts.audit.query import VERDICTS, parse_time

# Query-string names of the text filters, in form order, with their labels.
TEXT_FILTERS: tuple[tuple[str, str], ...] = (
    ("policy", "Policy"),
    ("reason", "Reason"),
    ("model", "Model"),
    ("target", "Target"),
    ("who", "Role or key name"),
    ("request", "Request or event ID"),
)
# Event types the gateway writes, with labels for the form.
EVENT_TYPES: dict[str, str] = {
    "decision": "Requests",
    "config_reload": "Config reloads",
    "retention_purge": "Retention purges",
    "audit_discontinuity": "Audit discontinuities",
}
MAX_TEXT = 200  # longer filter values are cut: nothing legitimate is that long


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events to show. Empty fields do not filter.

    * ``since``/``until``: epoch seconds, inclusive (from ``5m``/``2d``/a date/RFC 3339).
    * ``verdict``: allow, block, redact or error.
    * ``policy``: the policy that decided the verdict (the event's ``policy``).
    * ``reason``: ``reason_code``; ``model``; ``target``: ``target_id``.
    * ``who``: the caller's role or gateway key name.
    * ``request``: the request id or the event id.
    * ``type``: the event type (``decision`` for requests, ``config_reload``, …).
    * ``q``: free text, a case-insensitive substring of any of the above.
    """

    since: float | None = None
    until: float | None = None
    verdict: str | None = None
    type: str | None = None
    policy: str | None = None
    reason: str | None = None
    model: str | None = None
    target: str | None = None
    who: str | None = None
    request: str | None = None
    q: str | None = None
    # The raw since/until text, to show it back in the form and in links.
    since_text: str = field(default="", compare=False)
    until_text: str = field(default="", compare=False)

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> tuple[EventFilter, list[str]]:
        """The filter in ``params``, and a message per value that could not be used."""
        errors: list[str] = []
        values: dict[str, Any] = {}
        for name in ("since", "until"):
            raw = (params.get(name) or "").strip()[:MAX_TEXT]
            values[f"{name}_text"] = raw
            if raw:
                try:
                    values[name] = parse_time(raw)
                except ValueError as exc:
                    errors.append(f"{name.capitalize()}: {exc}")
        verdict = (params.get("verdict") or "").strip()
        if verdict:
            if verdict in VERDICTS:
                values["verdict"] = verdict
            else:
                errors.append(f"Verdict must be one of {', '.join(VERDICTS)}.")
        kind = (params.get("type") or "").strip()
        if kind:
            if kind in EVENT_TYPES:
                values["type"] = kind
            else:
                errors.append(f"Kind must be one of {', '.join(EVENT_TYPES)}.")
        for name in (*(n for n, _ in TEXT_FILTERS), "q"):
            raw = (params.get(name) or "").strip()[:MAX_TEXT]
            if raw:
                values[name] = raw
        return cls(**values), errors

    def to_query(self) -> dict[str, str]:
        """Query-string parameters that reproduce this filter (empty ones left out)."""
        out: dict[str, str] = {}
        if self.since_text:
            out["since"] = self.since_text
        if self.until_text:
            out["until"] = self.until_text
        for f in fields(self):
            if f.name in ("since", "until", "since_text", "until_text"):
                continue
            value = getattr(self, f.name)
            if value:
                out[f.name] = str(value)
        return out

    @property
    def active(self) -> bool:
        return any(
            getattr(self, f.name) not in (None, "")
            for f in fields(self)
            if f.name not in ("since_text", "until_text")
        )

    def matches(self, event: Mapping[str, Any]) -> bool:
        """The reference semantics, for stores without a query language."""
        ts = event_ts(event)
        if self.since is not None and (ts is None or ts < self.since):
            return False
        if self.until is not None and (ts is None or ts > self.until):
            return False
        ident = event.get("identity") if isinstance(event.get("identity"), Mapping) else {}
        role, key_name = ident.get("role"), ident.get("key_name")
        checks = (
            (self.verdict, event.get("verdict")),
            (self.type, event.get("event_type")),
            (self.policy, event.get("policy")),
            (self.reason, event.get("reason_code")),
            (self.model, event.get("model")),
            (self.target, event.get("target_id")),
        )
        if any(want is not None and have != want for want, have in checks):
            return False
        if self.who is not None and self.who not in (role, key_name):
            return False
        if self.request is not None and self.request not in (
            event.get("request_id"),
            event.get("id"),
        ):
            return False
        if self.q is not None:
            needle = self.q.lower()
            hay = (
                event.get("id"),
                event.get("request_id"),
                event.get("event_type"),
                event.get("reason_code"),
                event.get("policy"),
                event.get("model"),
                event.get("target_id"),
                role,
                key_name,
            )
            if not any(isinstance(h, str) and needle in h.lower() for h in hay):
                return False
        return True


def event_ts(event: Mapping[str, Any]) -> float | None:
    return parse_ts(event.get("timestamp"))
