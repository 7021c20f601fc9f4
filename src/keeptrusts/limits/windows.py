"""Time arithmetic for limits: sliding 60 s windows and UTC day/month budget periods.

Per-minute limits use a sliding-window counter: counts are kept per fixed 60 s window, and
a request is checked against ``current + previous * (1 - elapsed / 60)``, the previous
window's count weighted by how much of it still overlaps the last 60 s. This keeps two
integers per counter, needs no per-request log, never admits a burst at a window boundary
(60 at 12:00:59 and 60 more at 12:01:00), and a reservation can be refunded exactly
because it names the window it was counted in.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

WINDOW = 60.0


def window(now: float) -> tuple[int, float]:
    """The current window's index and the seconds elapsed in it."""
    idx = int(now // WINDOW)
    return idx, now - idx * WINDOW


def window_retry_after(cur: int, prev: int, elapsed: float, limit: int, cost: int) -> float:
    """Seconds until ``cost`` more fits under ``limit``, if nothing else is counted."""
    if cost > limit:
        return WINDOW
    room = limit - cost
    left = WINDOW - elapsed
    if cur <= room and prev > 0:
        # The previous window's weight falls to (room - cur) / prev within this window?
        t = WINDOW * (1.0 - (room - cur) / prev) - elapsed
        if t < left:
            return max(t, 0.0)
    if cur <= room:
        return left
    # After the rollover this window's count is the previous one, fading over 60 s.
    return left + WINDOW * (1.0 - room / cur)


class Period:
    """A UTC day or month; caches its bounds so most calls do no date arithmetic."""

    __slots__ = ("end", "kind", "label", "start")

    def __init__(self, kind: str) -> None:
        self.kind = kind  # day | month
        self.start = self.end = 0.0
        self.label = ""

    def at(self, now: float) -> tuple[str, float]:
        """The period's id (``d20260725`` / ``m202607``) and its end, for ``now``."""
        if not self.start <= now < self.end:
            self._compute(now)
        return self.label, self.end

    def _compute(self, now: float) -> None:
        d = datetime.fromtimestamp(now, UTC)
        if self.kind == "day":
            start = d.replace(hour=0, minute=0, second=0, microsecond=0)
            self.label = f"d{start:%Y%m%d}"
            self.end = start.timestamp() + 86400.0
        else:
            start = d.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            nxt = (
                start.replace(year=start.year + 1, month=1)
                if start.month == 12
                else (start.replace(month=start.month + 1))
            )
            self.label = f"m{start:%Y%m}"
            self.end = nxt.timestamp()
        self.start = start.timestamp()


def whole_seconds(seconds: float) -> int:
    """A ``Retry-After`` value: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(seconds - 1e-9))


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
