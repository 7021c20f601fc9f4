"""Python clients for what wrk cannot measure, and a fallback load generator.

Raw asyncio protocols on uvloop, no HTTP library: parsing costs a few microseconds per
response, so they stay far from being the bottleneck at the rates a Python proxy reaches.

    loadgen.py ttft    URL BODY [--auth H] [--requests N] [--seconds S]
        sequential streamed requests on one connection: time to first token (first SSE
        event with non-empty content) and to the end of the stream
    loadgen.py streams URL BODY --n N [--stall-ms 500] [--seconds S]
        N concurrent streams, each on its own connection: completed, failed, stalled (a gap
        between two reads after the first content token longer than --stall-ms), largest
        gap, time to first byte and to first content token
    loadgen.py load    URL BODY --connections C --seconds S
        closed-loop load like wrk (the fallback when wrk is missing)

Every command prints one ``BENCHJSON {...}`` line. Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from urllib.parse import urlsplit

import prompts  # bench/prompts.py: this script runs from bench/

_TOKEN = re.compile(rb'"(?:content|text)"\s*:\s*"[^"]')


class Requests:
    """The request to send, again and again; a body template (bench/prompts.py markers)
    gets a different prompt each time."""

    def __init__(self, url: str, body: bytes, auth: str | None) -> None:
        self.url, self.body, self.auth = url, body, auth
        self.host, self.port, self.fixed = build_request(url, body, auth)
        self.n = prompts.start() if b"@@N@@" in body else 0

    def next(self) -> bytes:
        if not self.n:
            return self.fixed
        self.n += 1
        return build_request(self.url, prompts.fill(self.body, self.n), self.auth)[2]


def build_request(url: str, body: bytes, auth: str | None) -> tuple[str, int, bytes]:
    u = urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    lines = [
        f"POST {u.path or '/'} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        "Accept: */*",
        f"Content-Length: {len(body)}",
    ]
    if auth:
        lines.append(f"Authorization: {auth}")
    return host, port, ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Client(asyncio.Protocol):
    """One keep-alive connection; ``send`` returns a future that resolves at the response end."""

    def __init__(self, track_gaps: bool = False) -> None:
        self.t: asyncio.Transport | None = None
        self.track_gaps = track_gaps
        self.lost = asyncio.get_running_loop().create_future()
        self.fut: asyncio.Future | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        if self.fut is not None and not self.fut.done():
            self.fut.set_exception(ConnectionError("connection closed mid-response"))

    def send(self, req: bytes) -> asyncio.Future:
        self.buf = bytearray()
        self.status = 0
        self.headers_done = False
        self.clen: int | None = None
        self.chunked = False
        self.body_seen = 0
        self.chunk_left = -1
        self.sent = time.perf_counter()
        self.first_byte: float | None = None
        self.first_token: float | None = None
        self.last: float = 0.0
        self.max_gap = 0.0
        self.gaps: list[float] = []
        self.fut = asyncio.get_running_loop().create_future()
        assert self.t is not None
        self.t.write(req)
        return self.fut

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if self.fut is None or self.fut.done():
            return
        # Gaps count from the first content token on: a policy that holds text back before
        # releasing it (a redaction window) shows up in first-token time, not as a stall.
        if self.track_gaps and self.first_token is not None:
            gap = now - self.last
            self.gaps.append(gap)
            if gap > self.max_gap:
                self.max_gap = gap
        self.last = now
        if self.first_byte is None:
            self.first_byte = now
        self.buf += data
        if not self.headers_done:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            self.status = int(head[9:12])
            del self.buf[: end + 4]
            self.headers_done = True
            m = re.search(rb"\r\ncontent-length:\s*(\d+)", head)
            if m:
                self.clen = int(m.group(1))
            self.chunked = b"\r\ntransfer-encoding: chunked" in head
        if self.first_token is None and _TOKEN.search(self.buf):
            self.first_token = now
        if self.chunked:
            self._chunks()
        elif self.clen is not None and len(self.buf) >= self.clen:
            self.fut.set_result(self.status)
        # neither: the response ends when the connection closes (connection_lost).

    def _chunks(self) -> None:
        buf = self.buf
        while True:
            nl = buf.find(b"\r\n")
            if nl < 0:
                return
            size = int(bytes(buf[:nl]).split(b";")[0] or b"0", 16)
            if size == 0:
                if buf.find(b"\r\n", nl + 2) >= 0:
                    del buf[:]
                    assert self.fut is not None
                    self.fut.set_result(self.status)
                return
            if len(buf) < nl + 2 + size + 2:
                return
            # keep the last chunk's bytes around for the first-token search
            del buf[: nl + 2 + size + 2]


async def _connect(host: str, port: int, track_gaps: bool = False) -> Client:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(lambda: Client(track_gaps), host, port)
    return proto


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


async def cmd_ttft(args: argparse.Namespace) -> dict:
    reqs = Requests(args.url, args.body, args.auth)
    host, port = reqs.host, reqs.port
    c = await _connect(host, port)
    ttft, total, errors = [], [], 0
    deadline = time.perf_counter() + args.seconds
    for _ in range(args.requests):
        if time.perf_counter() > deadline:
            break
        try:
            status = await asyncio.wait_for(c.send(reqs.next()), args.timeout)
        except (TimeoutError, ConnectionError):
            errors += 1
            c.t.close() if c.t else None
            c = await _connect(host, port)
            continue
        if status != 200 or c.first_token is None:
            errors += 1
            continue
        ttft.append((c.first_token - c.sent) * 1e3)
        total.append((time.perf_counter() - c.sent) * 1e3)
    if c.t:
        c.t.close()
    return {
        "requests": len(ttft),
        "errors": errors,
        "ttft_p50_ms": pct(ttft, 50),
        "ttft_p99_ms": pct(ttft, 99),
        "total_p50_ms": pct(total, 50),
        "total_p99_ms": pct(total, 99),
    }


async def cmd_streams(args: argparse.Namespace) -> dict:
    reqs = Requests(args.url, args.body, args.auth)
    host, port = reqs.host, reqs.port
    started = time.perf_counter()
    deadline = started + args.seconds

    async def one() -> tuple[str, float, float, list[float], float | None]:
        try:
            c = await asyncio.wait_for(
                _connect(host, port, True), max(1.0, deadline - time.perf_counter())
            )
        except (OSError, TimeoutError):
            return "connect", 0.0, 0.0, [], None
        try:
            fut = c.send(reqs.next())
            status = await asyncio.wait_for(fut, max(0.1, deadline - time.perf_counter()))
        except TimeoutError:
            return "timeout", 0.0, c.max_gap, c.gaps, None
        except ConnectionError:
            return "reset", 0.0, c.max_gap, c.gaps, None
        finally:
            if c.t:
                c.t.close()
        ttfb = (c.first_byte - c.sent) if c.first_byte else 0.0
        ftok = (c.first_token - c.sent) if c.first_token else None
        outcome = "ok" if status == 200 else f"http_{status}"
        if outcome == "ok" and ftok is None:
            outcome = "no_content"
        return outcome, ttfb, c.max_gap, c.gaps, ftok

    results = await asyncio.gather(*(one() for _ in range(args.n)))
    outcomes: dict[str, int] = {}
    gaps: list[float] = []
    stalled = 0
    ttfbs, ftoks = [], []
    max_gap = 0.0
    for outcome, ttfb, mg, g, ftok in results:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        gaps.extend(g)
        max_gap = max(max_gap, mg)
        if outcome == "ok":
            ttfbs.append(ttfb * 1e3)
            ftoks.append(ftok * 1e3)
            if mg * 1e3 > args.stall_ms:
                stalled += 1
    ok = outcomes.get("ok", 0)
    return {
        "n": args.n,
        "ok": ok,
        "failed": args.n - ok,
        "stalled": stalled,
        "stall_free": ok == args.n and stalled == 0,
        "outcomes": outcomes,
        "max_gap_ms": max_gap * 1e3,
        "p99_gap_ms": pct(gaps, 99) * 1e3 if gaps else None,
        "ttfb_p50_ms": pct(ttfbs, 50),
        "ttfb_p99_ms": pct(ttfbs, 99),
        "first_token_p50_ms": pct(ftoks, 50),
        "first_token_p99_ms": pct(ftoks, 99),
        "seconds": time.perf_counter() - started,
    }


async def cmd_load(args: argparse.Namespace) -> dict:
    reqs = Requests(args.url, args.body, args.auth)
    host, port = reqs.host, reqs.port
    lat: list[float] = []
    errs = {"connect": 0, "read": 0, "status": 0, "timeout": 0}
    started = time.perf_counter()
    deadline = started + args.seconds

    async def worker() -> None:
        try:
            c = await _connect(host, port)
        except OSError:
            errs["connect"] += 1
            return
        while time.perf_counter() < deadline:
            try:
                status = await asyncio.wait_for(c.send(reqs.next()), args.timeout)
            except TimeoutError:
                errs["timeout"] += 1
                break
            except ConnectionError:
                errs["read"] += 1
                break
            lat.append(time.perf_counter() - c.sent)
            if status >= 400:
                errs["status"] += 1
        if c.t:
            c.t.close()

    await asyncio.gather(*(worker() for _ in range(args.connections)))
    dur = time.perf_counter() - started
    us = [x * 1e6 for x in lat]
    return {
        "requests": len(lat),
        "duration_us": int(dur * 1e6),
        "bytes": 0,
        "write": 0,
        **errs,
        "p50_us": pct(us, 50),
        "p90_us": pct(us, 90),
        "p99_us": pct(us, 99),
        "p999_us": pct(us, 99.9),
        "max_us": max(us) if us else 0,
        "mean_us": sum(us) / len(us) if us else 0,
        "generator": "python",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description="benchmark clients")
    ap.add_argument("command", choices=("ttft", "streams", "load"))
    ap.add_argument("url")
    ap.add_argument("body_file")
    ap.add_argument("--auth")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--stall-ms", type=float, default=500.0)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()
    with open(args.body_file, "rb") as f:
        args.body = f.read()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        print("note: uvloop missing, using asyncio's default loop", file=sys.stderr)
    fn = {"ttft": cmd_ttft, "streams": cmd_streams, "load": cmd_load}[args.command]
    print("BENCHJSON " + json.dumps(asyncio.run(fn(args))), flush=True)


if __name__ == "__main__":
    main()
