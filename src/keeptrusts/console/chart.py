"""The overview chart: decisions per time bucket as stacked bars, in inline SVG.

Rendered on the server (no chart library, no script): colours come from classes styled by
``console.css``; every bar has a ``<title>`` tooltip and the page also offers the same
numbers as a table for screen readers.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from html import escape

from keeptrusts.console.queries import WINDOWS, Overview

# Bottom to top; "other" only shows when the log has decisions without a known verdict.
SERIES: tuple[tuple[str, str], ...] = (
    ("allow", "Allowed"),
    ("redact", "Redacted"),
    ("block", "Blocked"),
    ("error", "Errors"),
    ("other", "Other"),
)

WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 14, 34


def nice_max(value: int) -> int:
    """An axis maximum >= ``value`` whose quarters are round whole numbers."""
    if value <= 4:
        return 4
    quarter = value / 4
    exp = 10 ** math.floor(math.log10(quarter))
    for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        step = m * exp
        if step >= quarter and step == int(step):
            return 4 * int(step)
    return 40 * exp  # not reached


def bucket_label(ts: float, window: str) -> str:
    dt = datetime.fromtimestamp(ts, UTC)
    if window in ("1h", "24h"):
        return dt.strftime("%H:%M")
    if window == "7d":
        return dt.strftime("%a %H:%M")
    return dt.strftime("%d %b")


def bucket_range(ov: Overview, i: int) -> str:
    a = datetime.fromtimestamp(ov.start + i * ov.bucket, UTC)
    b = datetime.fromtimestamp(ov.start + (i + 1) * ov.bucket, UTC)
    fmt = "%Y-%m-%d %H:%M"
    return f"{a.strftime(fmt)}\u2013{b.strftime('%H:%M' if a.date() == b.date() else fmt)} UTC"


def series_present(ov: Overview) -> list[tuple[str, str]]:
    return [(k, label) for k, label in SERIES if k != "other" or ov.totals.get("other")]


def chart_svg(ov: Overview) -> str:
    n = len(ov.series)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = nice_max(max((sum(b.values()) for b in ov.series), default=0))
    slot = plot_w / max(n, 1)
    bar_w = max(1.0, slot * 0.78)
    label = WINDOWS[ov.window][0].lower()
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        'aria-labelledby="chart-title chart-desc" preserveAspectRatio="xMidYMid meet">',
        f'<title id="chart-title">Decisions over time, {escape(label)}</title>',
        f'<desc id="chart-desc">{escape(_describe(ov))}</desc>',
    ]
    # Horizontal grid lines and y labels.
    for k in range(5):
        value = top * k / 4
        y = TOP + plot_h - plot_h * k / 4
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        text = f"{value:g}" if value < 10_000 else f"{value / 1000:g}k"
        parts.append(
            f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{text}</text>'
        )
    # Bars, stacked bottom to top.
    for i, bucket in enumerate(ov.series):
        total = sum(bucket.values())
        if not total:
            continue
        x = LEFT + i * slot + (slot - bar_w) / 2
        y = TOP + plot_h
        tip = ", ".join(f"{bucket[k]} {lab.lower()}" for k, lab in SERIES if bucket.get(k))
        parts.append(f"<g><title>{escape(bucket_range(ov, i))}: {total} ({escape(tip)})</title>")
        for key, _ in SERIES:
            count = bucket.get(key, 0)
            if not count:
                continue
            h = plot_h * count / top
            y -= h
            parts.append(
                f'<rect class="bar bar-{key}" x="{x:.1f}" y="{y:.1f}" '
                f'width="{bar_w:.1f}" height="{h:.1f}"/>'
            )
        parts.append("</g>")
    # X labels: about six, evenly spaced.
    every = max(1, math.ceil(n / 6))
    for i in range(0, n, every):
        x = LEFT + i * slot
        parts.append(
            f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 10}" text-anchor="start">'
            f"{escape(bucket_label(ov.start + i * ov.bucket, ov.window))}</text>"
        )
    parts.append(
        f'<line class="baseline" x1="{LEFT}" x2="{WIDTH - RIGHT}" '
        f'y1="{TOP + plot_h}" y2="{TOP + plot_h}"/>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _describe(ov: Overview) -> str:
    counts = ", ".join(f"{ov.totals.get(k, 0)} {label.lower()}" for k, label in series_present(ov))
    minutes = ov.bucket / 60
    if minutes < 60:
        per = "minute" if minutes == 1 else f"{minutes:g} minutes"
    else:
        per = "hour" if minutes == 60 else f"{minutes / 60:g} hours"
    return f"Stacked bars, one per {per}: {ov.requests} requests in all ({counts})."
