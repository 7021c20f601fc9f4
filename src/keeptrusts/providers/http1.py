"""The upstream leg's HTTP/1.1 client: keep-alive pools, one write per request.

The gateway only ever POSTs a body it already holds to a handful of hosts and reads back
a JSON body or an SSE stream. aiohttp's client does much more per request (a request and
a response object with multidicts, a writer task, a stream reader, cookie and redirect
handling) and that was about a third of the bare pass-through proxy's CPU. This client
does only what the upstream leg needs:

* one ``transport.write`` of head and body, no task per request;
* a response parser for ``Content-Length``, ``chunked`` and read-until-close bodies,
  with ``gzip``/``deflate`` decoding (we do not ask for compression, but honour it);
* pools per (scheme, host, port), newest connection first, idle ones closed after
  ``keepalive`` seconds; a connection goes back to its pool the moment its response is
  complete, and is closed when a caller leaves a response unread;
* a pooled connection the server has closed is never reused (its close reaches us as
  soon as it happens); a request is never sent twice (LLM calls are not idempotent):
  retries are the router's decision;
* timeouts: ``connect`` for opening a connection (TLS included) and ``read`` for the
  first byte and every gap after it; both raise ``TimeoutError``;
* back-pressure: a stream whose reader falls behind stops reading from the socket.

Errors are ``ConnectError`` (could not connect), ``ServerDisconnected`` (the connection
ended before the response did) and ``ProtocolError`` (not HTTP/1.x), all
``ConnectionError``s, and ``TimeoutError``.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import zlib
from collections import deque
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "ConnectError",
    "HttpClient",
    "ProtocolError",
    "Response",
    "ServerDisconnected",
]

MAX_HEAD = 64 * 1024
# A stream's unread bytes above which the socket stops being read, and below which it
# is read again.
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024

_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)


class ConnectError(ConnectionError):
    """No connection to the upstream could be opened (DNS, refused, TLS)."""


class ServerDisconnected(ConnectionError):
    """The connection ended before the response was complete."""


class ProtocolError(ConnectionError):
    """The upstream's answer is not a well-formed HTTP/1.x response."""


@functools.lru_cache(maxsize=1024)
def _split(url: str) -> tuple[tuple[str, str, int], str, str]:
    """``((scheme, host, port), host header, request target)`` for ``url``."""
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(f"not an http(s) URL: {u.scheme}://{u.hostname or ''}")
    default = 443 if u.scheme == "https" else 80
    port = u.port or default
    host = u.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == default else f"{shown}:{port}"
    target = (u.path or "/") + (f"?{u.query}" if u.query else "")
    return (u.scheme, host, port), host_header, target


class Response:
    """One upstream response: ``status``, ``headers`` (lower-case names), ``read()`` and
    ``content.iter_any()`` (the body as it arrives)."""

    __slots__ = (
        "_body",
        "_buffered",
        "_conn",
        "_decoder",
        "_exc",
        "_head",
        "_loop",
        "_paused",
        "_read_timeout",
        "_remaining",
        "_state",
        "_waiter",
        "headers",
        "keep_alive",
        "status",
    )

    def __init__(self, conn: _Conn, read_timeout: float | None) -> None:
        self._conn = conn
        self._loop = conn.loop
        self._read_timeout = read_timeout
        self._state = _HEAD
        self._head = bytearray()
        self._body: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._remaining = 0
        self._decoder: Any = None
        self._exc: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.status = 0
        self.headers: dict[str, str] = {}
        self.keep_alive = False

    @property
    def content(self) -> Response:
        return self

    @property
    def done(self) -> bool:
        return self._state == _DONE

    # -- fed by the connection ---------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        try:
            self._feed(data)
        except ProtocolError as exc:
            self._fail(exc)
            self._conn.close()

    def _feed(self, data: bytes) -> None:
        while data:
            state = self._state
            if state == _HEAD:
                data = self._feed_head(data)
            elif state == _LENGTH:
                take = data[: self._remaining]
                self._remaining -= len(take)
                self._deliver(take)
                if self._remaining == 0:
                    if len(data) > len(take):  # more than the response: not a reusable conn
                        self.keep_alive = False
                    self._finish()
                return
            elif state == _UNTIL_CLOSE:
                self._deliver(data)
                return
            elif state == _DONE:
                self.keep_alive = False  # bytes after the response: do not reuse
                self._conn.reusable = False
                return
            else:
                data = self._feed_chunked(data)

    def _feed_head(self, data: bytes) -> bytes:
        head = self._head
        start = max(0, len(head) - 3)
        head += data
        end = head.find(b"\r\n\r\n", start)
        if end < 0:
            if len(head) > MAX_HEAD:
                raise ProtocolError("response head too large")
            return b""
        rest = bytes(head[end + 4 :])
        lines = bytes(head[:end]).decode("latin-1").split("\r\n")
        head.clear()
        try:
            version, code = lines[0].split(" ", 2)[:2]
            status = int(code)
        except ValueError:
            raise ProtocolError("malformed status line") from None
        if not version.startswith("HTTP/1."):
            raise ProtocolError("not an HTTP/1.x response")
        if 100 <= status < 200:  # 100 Continue and friends: the real head follows
            return rest
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise ProtocolError("malformed header line")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self.status = status
        self.headers = headers
        conn_hdr = headers.get("connection", "").lower()
        self.keep_alive = (
            "keep-alive" in conn_hdr if version == "HTTP/1.0" else "close" not in conn_hdr
        )
        encoding = headers.get("content-encoding", "identity").lower()
        if encoding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._decoder = zlib.decompressobj()
        elif encoding not in ("identity", ""):
            raise ProtocolError(f"unsupported content-encoding {encoding!r}")
        if status in (204, 304):
            self._finish()
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._state = _CHUNK_SIZE
        elif "content-length" in headers:
            try:
                self._remaining = int(headers["content-length"])
            except ValueError:
                raise ProtocolError("malformed content-length") from None
            if self._remaining < 0:
                raise ProtocolError("malformed content-length")
            self._state = _LENGTH
            if self._remaining == 0:
                self._finish()
        else:
            self._state = _UNTIL_CLOSE
            self.keep_alive = False
        self._wake()
        return rest

    def _feed_chunked(self, data: bytes) -> bytes:
        """Consume ``data`` in a chunked body; what it carries is delivered at once (one
        read of an SSE stream often holds many chunks)."""
        buf = self._head  # reused for a framing line split across reads
        if buf:
            buf += data
            data = bytes(buf)
            buf.clear()
        out: list[bytes] = []
        pos, n = 0, len(data)
        while pos < n:
            state = self._state
            if state == _CHUNK_SIZE:
                # Fast path: whole chunks back to back, the usual shape of an SSE read.
                pos = self._whole_chunks(data, pos, out)
                if pos >= n or self._state != _CHUNK_SIZE:
                    continue
            if state == _CHUNK_DATA:
                take = min(self._remaining, n - pos)
                out.append(data[pos : pos + take])
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = _CHUNK_END
                continue
            end = data.find(b"\r\n", pos)
            if end < 0:
                if n - pos > MAX_HEAD:
                    raise ProtocolError("chunk framing line too long")
                buf += data[pos:]
                break
            line = data[pos:end]
            pos = end + 2
            if state == _CHUNK_END:
                if line:
                    raise ProtocolError("chunk not followed by CRLF")
                self._state = _CHUNK_SIZE
            elif state == _CHUNK_SIZE:
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise ProtocolError("malformed chunk size") from None
                if size == 0:
                    self._state = _TRAILERS
                else:
                    self._remaining = size
                    self._state = _CHUNK_DATA
            elif state == _TRAILERS and not line:  # trailer lines are skipped
                if out:
                    self._deliver(b"".join(out))
                if pos < n:
                    self.keep_alive = False
                self._finish()
                return b""
        if out:
            self._deliver(out[0] if len(out) == 1 else b"".join(out))
        return b""

    def _whole_chunks(self, data: bytes, pos: int, out: list[bytes]) -> int:
        """Take complete non-empty chunks from ``pos`` on; return where the general
        parser must go on (a partial chunk, an extension, the last chunk, bad framing)."""
        n = len(data)
        find = data.find
        while True:
            end = find(b"\r\n", pos)
            if end < 0:
                return pos
            try:
                size = int(data[pos:end], 16)
            except ValueError:  # a chunk extension: the general parser handles it
                return pos
            start = end + 2
            stop = start + size
            if size == 0 or stop + 2 > n or data[stop : stop + 2] != b"\r\n":
                return pos
            out.append(data[start:stop])
            pos = stop + 2

    def _deliver(self, data: bytes) -> None:
        if self._decoder is not None:
            try:
                data = self._decoder.decompress(data)
            except zlib.error:
                raise ProtocolError("body does not decompress") from None
        if data:
            self._body.append(data)
            self._buffered += len(data)
            if self._buffered > HIGH_WATER and not self._paused:
                self._paused = True
                self._conn.pause_reading()
        self._wake()

    def _finish(self) -> None:
        if self._decoder is not None:
            tail = self._decoder.flush()
            if tail:
                self._body.append(tail)
        self._state = _DONE
        self._conn.response_done(self)
        self._wake()

    def lost(self, exc: BaseException | None) -> None:
        """The connection closed: the end of a read-until-close body, else a failure."""
        if self._state == _DONE:
            return
        if self._state == _UNTIL_CLOSE and exc is None:
            self._finish()
            return
        self._fail(ServerDisconnected("upstream closed the connection before the response ended"))

    def _fail(self, exc: BaseException) -> None:
        if self._exc is None and self._state != _DONE:
            self._exc = exc
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _timed_out(self) -> None:
        self._fail(TimeoutError("upstream read timed out"))
        self._conn.close()

    async def _wait(self) -> None:
        fut = self._waiter = self._loop.create_future()
        timer = (
            self._loop.call_later(self._read_timeout, self._timed_out)
            if self._read_timeout
            else None
        )
        try:
            await fut
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    # -- read by the caller ------------------------------------------------------------------

    async def wait_head(self) -> None:
        while self._state == _HEAD:
            if self._exc is not None:
                raise self._exc
            await self._wait()

    def _take(self) -> bytes:
        body = self._body
        data = body[0] if len(body) == 1 else b"".join(body)
        body.clear()
        self._buffered = 0
        if self._paused:
            self._paused = False
            self._conn.resume_reading()
        return data

    async def read(self) -> bytes:
        """The whole body."""
        while self._state != _DONE:
            if self._exc is not None:
                raise self._exc
            await self._wait()
        return self._take() if self._body else b""

    async def iter_any(self) -> AsyncIterator[bytes]:
        """The body as it arrives, one item per batch of received bytes."""
        while True:
            if self._body:
                yield self._take()
                continue
            if self._state == _DONE:
                return
            if self._exc is not None:
                raise self._exc
            await self._wait()


class _Conn(asyncio.Protocol):
    """One keep-alive connection; carries one response at a time."""

    def __init__(self, client: HttpClient, key: tuple[str, str, int]) -> None:
        self.client = client
        self.key = key
        self.loop = client.loop
        self.transport: asyncio.Transport | None = None
        self.response: Response | None = None
        self.closed = False
        self.idle_since = 0.0
        self.reusable = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        resp = self.response
        if resp is None:  # nothing asked for: an idle connection must stay silent
            self.close()
            return
        resp.feed(data)

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        self.client.forget(self)
        resp = self.response
        if resp is not None:
            self.response = None
            resp.lost(exc)

    def response_done(self, resp: Response) -> None:
        if self.response is resp:
            self.response = None
            self.reusable = resp.keep_alive

    def pause_reading(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        self.reusable = False
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()


class _Exchange:
    """``async with client.post(...) as resp``: sends on enter, settles the connection on
    exit (back to its pool if the response was read to the end, else closed)."""

    __slots__ = ("_client", "_conn", "_data", "_headers", "_resp", "_timeouts", "_url")

    def __init__(
        self,
        client: HttpClient,
        url: str,
        data: bytes,
        headers: dict[str, str],
        timeouts: tuple[float | None, float | None],
    ) -> None:
        self._client = client
        self._url = url
        self._data = data
        self._headers = headers
        self._timeouts = timeouts
        self._conn: _Conn | None = None
        self._resp: Response | None = None

    async def __aenter__(self) -> Response:
        client = self._client
        key, host_header, target = _split(self._url)
        head = _request_head(target, host_header, self._headers, len(self._data))
        connect_timeout, read_timeout = self._timeouts
        await client.slots.acquire()
        try:
            conn = self._conn = await client.acquire(key, connect_timeout)
            resp = self._resp = Response(conn, read_timeout)
            conn.response = resp
            assert conn.transport is not None
            conn.transport.write(head + self._data if self._data else head)
            await resp.wait_head()
            return resp
        except BaseException:
            self._settle()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._settle()

    def _settle(self) -> None:
        conn, resp = self._conn, self._resp
        if conn is not None:
            self._conn = None
            if resp is not None and resp.done and conn.reusable and not conn.closed:
                self._client.release(conn)
            else:
                if conn.response is resp:
                    conn.response = None
                conn.close()
            self._client.slots.release()
        elif self._resp is None:
            self._client.slots.release()


def _request_head(target: str, host: str, headers: dict[str, str], length: int) -> bytes:
    lines = [f"POST {target} HTTP/1.1\r\nhost: {host}\r\ncontent-length: {length}\r\n"]
    for name, value in headers.items():
        if name in ("host", "content-length", "transfer-encoding", "connection"):
            continue
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    head = "".join(lines)
    breaks = len(lines) + 2
    if head.count("\n") != breaks or head.count("\r") != breaks:
        # A header name or value with a line break would smuggle headers to the upstream.
        raise ValueError("an upstream header contains a line break")
    return head.encode("latin-1")


class HttpClient:
    """Connection pools to upstreams. ``limit``: most requests in flight at once (more wait).

    Use from one event loop; ``close()`` ends every connection.
    """

    def __init__(
        self,
        *,
        limit: int = 1000,
        keepalive: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.slots = asyncio.Semaphore(limit) if limit > 0 else _NoLimit()
        self.keepalive = keepalive
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._open: set[_Conn] = set()
        self._last_sweep = self.loop.time()
        self.closed = False

    @property
    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def post(
        self,
        url: str,
        *,
        data: bytes = b"",
        headers: dict[str, str] | None = None,
        timeout: tuple[float | None, float | None] = (None, None),
    ) -> _Exchange:
        """POST ``data`` to ``url``; ``timeout`` is ``(connect, read)`` seconds."""
        if self.closed:
            raise RuntimeError("the upstream client is closed")
        return _Exchange(self, url, data, headers or {}, timeout)

    async def acquire(self, key: tuple[str, str, int], connect_timeout: float | None) -> _Conn:
        """The newest idle connection to ``key``, else a new one."""
        idle = self._idle.get(key)
        if idle:
            now = self.loop.time()
            while idle:
                conn = idle.pop()
                if (
                    not conn.closed
                    and conn.transport is not None
                    and not conn.transport.is_closing()
                    and now - conn.idle_since < self.keepalive
                ):
                    return conn
                self.forget(conn)
        return await self._connect(key, connect_timeout)

    async def _connect(self, key: tuple[str, str, int], timeout: float | None) -> _Conn:
        scheme, host, port = key
        tls = self.ssl_context if scheme == "https" else None
        coro = self.loop.create_connection(
            lambda: _Conn(self, key), host, port, ssl=tls, server_hostname=host if tls else None
        )
        try:
            if timeout:
                _, conn = await asyncio.wait_for(coro, timeout)
            else:
                _, conn = await coro
        except TimeoutError:  # an OSError too, but a timeout, not a refusal
            raise
        except OSError as exc:  # refused, unreachable, DNS (gaierror), TLS (SSLError)
            raise ConnectError(f"cannot connect to {host}:{port}: {type(exc).__name__}") from exc
        self._open.add(conn)
        return conn

    def release(self, conn: _Conn) -> None:
        if self.closed:
            self.forget(conn)
            return
        conn.reusable = False
        now = conn.idle_since = self.loop.time()
        self._idle.setdefault(conn.key, []).append(conn)
        if now - self._last_sweep > self.keepalive:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        """Close connections idle for longer than ``keepalive`` in every pool (a pool that
        is no longer used would otherwise hold its sockets until the server drops them)."""
        self._last_sweep = now
        for key, conns in list(self._idle.items()):
            keep: list[_Conn] = []
            for c in conns:
                if not c.closed and now - c.idle_since < self.keepalive:
                    keep.append(c)
                else:
                    self.forget(c)
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]

    def forget(self, conn: _Conn) -> None:
        conn.close()
        self._open.discard(conn)

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self.closed = True
        for conn in list(self._open):
            conn.close()
        self._open.clear()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports run their close callbacks


class _NoLimit:
    async def acquire(self) -> bool:
        return True

    def release(self) -> None:
        pass
