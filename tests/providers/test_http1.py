"""The upstream HTTP/1.1 client against a raw socket server that answers exactly the bytes
each test gives it (framings, faults and timing a real upstream can produce)."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from keeptrusts.providers.http1 import ConnectError, HttpClient, ServerDisconnected
from tests.conftest import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.open_now = 0
        self.most_open = 0
        self.requests: list[bytes] = []

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            await self.handler(r, w)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open_now -= 1
            w.close()

    async def read_request(self, r: asyncio.StreamReader) -> bytes:
        head = await r.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        body = await r.readexactly(length)
        self.requests.append(head + body)
        return body


@asynccontextmanager
async def serving(handler: Callable[[RawServer], Handler]) -> AsyncIterator[tuple[RawServer, str]]:
    srv = RawServer(lambda r, w: asyncio.sleep(0))
    srv.handler = handler(srv)
    port = free_port()
    server = await asyncio.start_server(srv._serve, "127.0.0.1", port)
    try:
        yield srv, f"http://127.0.0.1:{port}/v1/chat/completions?api-version=1"
    finally:
        server.close()


def keep_answering(*responses: bytes) -> Callable[[RawServer], Handler]:
    """Answer each request on a connection with the next response, in a loop."""

    def make(srv: RawServer) -> Handler:
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            i = 0
            while True:
                await srv.read_request(r)
                w.write(responses[i % len(responses)])
                await w.drain()
                i += 1

        return handle

    return make


def answer_once(reply: bytes) -> Callable[[RawServer], Handler]:
    """Answer one request with ``reply``, then close the connection."""

    def make(srv: RawServer) -> Handler:
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await srv.read_request(r)
            w.write(reply)
            await w.drain()

        return handle

    return make


OK = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n{"ok": true}'


async def test_keep_alive_reuses_one_connection_and_sends_a_well_formed_request() -> None:
    async with serving(keep_answering(OK)) as (srv, url), HttpClient() as http:
        for _ in range(3):
            async with http.post(url, data=b'{"a":1}', headers={"x-k": "v"}) as resp:
                assert resp.status == 200
                assert resp.headers["content-type"] == "application/json"
                assert await resp.read() == b'{"ok": true}'
        assert srv.connections == 1
        first = srv.requests[0]
        assert first.startswith(b"POST /v1/chat/completions?api-version=1 HTTP/1.1\r\n")
        assert b"\r\nhost: 127.0.0.1:" in first and b"\r\nx-k: v\r\n" in first
        assert first.endswith(b'\r\n\r\n{"a":1}')


async def test_chunked_body_is_decoded_and_streamed_as_it_arrives() -> None:
    def make(srv: RawServer) -> Handler:
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await srv.read_request(r)
            w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            for part in (b"data: 1\n\n", b"data: 2\n\n"):
                w.write(b"%x\r\n%s\r\n" % (len(part), part))
                await w.drain()
                await asyncio.sleep(0.05)
            w.write(b"0\r\n\r\n")
            await w.drain()
            await srv.read_request(r)  # the connection is reused for a second request
            w.write(OK)
            await w.drain()
            await asyncio.sleep(1)

        return handle

    async with serving(make) as (srv, url), HttpClient() as http:
        got = []
        async with http.post(url, data=b"{}") as resp:
            async for data in resp.content.iter_any():
                got.append(data)
        assert b"".join(got) == b"data: 1\n\ndata: 2\n\n"
        assert len(got) >= 2, "the chunks arrived apart and must be handed over apart"
        async with http.post(url, data=b"{}") as resp:
            assert await resp.read() == b'{"ok": true}'
        assert srv.connections == 1


async def test_gzip_body_is_decompressed() -> None:
    body = gzip.compress(b'{"answer": "' + b"x" * 5000 + b'"}')
    reply = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )
    async with (
        serving(keep_answering(reply)) as (_, url),
        HttpClient() as http,
        http.post(url, data=b"{}") as resp,
    ):
        assert await resp.read() == b'{"answer": "' + b"x" * 5000 + b'"}'


async def test_read_timeout_raises_timeout_error() -> None:
    def make(srv: RawServer) -> Handler:
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await srv.read_request(r)
            await asyncio.sleep(5)

        return handle

    async with serving(make) as (_, url), HttpClient() as http:
        with pytest.raises(TimeoutError):
            async with http.post(url, data=b"{}", timeout=(1.0, 0.2)):
                pass


async def test_connection_cut_mid_body_is_an_error_not_a_short_answer() -> None:
    cut = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + b'{"partial'
    async with (
        serving(answer_once(cut)) as (_, url),
        HttpClient() as http,
        http.post(url, data=b"{}") as resp,
    ):
        with pytest.raises(ServerDisconnected):
            await resp.read()


async def test_a_response_left_unfinished_closes_its_connection() -> None:
    def make(srv: RawServer) -> Handler:
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            while True:
                await srv.read_request(r)
                if len(srv.requests) == 1:  # a stream the client walks away from
                    w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
                else:
                    w.write(OK)
                await w.drain()

        return handle

    async with serving(make) as (srv, url), HttpClient() as http:
        async with http.post(url, data=b"{}") as resp:
            assert resp.status == 200  # leave before the stream ends
        for _ in range(2):
            async with http.post(url, data=b"{}") as resp:
                assert await resp.read() == b'{"ok": true}'
        # the unfinished stream's connection was not reused; the next two shared one
        assert srv.connections == 2


async def test_a_line_break_in_a_header_is_refused_before_anything_is_sent() -> None:
    async with serving(keep_answering(OK)) as (srv, url), HttpClient() as http:
        with pytest.raises(ValueError):
            async with http.post(url, data=b"{}", headers={"x-a": "1\r\nx-evil: 2"}):
                pass
        assert srv.requests == []


async def test_nothing_listening_is_a_connect_error() -> None:
    async with HttpClient() as http:
        with pytest.raises(ConnectError):
            async with http.post(f"http://127.0.0.1:{free_port()}/x", data=b"{}"):
                pass


async def test_limit_bounds_connections_in_flight() -> None:
    def make(srv: RawServer) -> Handler:
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            while True:
                await srv.read_request(r)
                await asyncio.sleep(0.05)
                w.write(OK)
                await w.drain()

        return handle

    async with serving(make) as (srv, url), HttpClient(limit=2) as http:

        async def one() -> bytes:
            async with http.post(url, data=b"{}") as resp:
                return await resp.read()

        got = await asyncio.gather(*(one() for _ in range(6)))
        assert got == [b'{"ok": true}'] * 6
        assert srv.most_open <= 2


async def test_large_streamed_body_arrives_whole_through_back_pressure() -> None:
    payload = bytes(range(256)) * 8192  # 2 MiB, above the read-pause threshold

    def make(srv: RawServer) -> Handler:
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await srv.read_request(r)
            w.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(payload))
            w.write(payload)
            await w.drain()
            await asyncio.sleep(1)

        return handle

    async with serving(make) as (_, url), HttpClient() as http:
        got = bytearray()
        async with http.post(url, data=b"{}") as resp:
            async for data in resp.content.iter_any():
                got += data
                await asyncio.sleep(0.001)  # a slow consumer
        assert bytes(got) == payload


async def test_server_closing_an_idle_connection_gets_a_new_one() -> None:
    # an upstream whose keep-alive timeout is short: it closes right after each answer
    async with serving(answer_once(OK)) as (srv, url), HttpClient() as http:
        for _ in range(3):
            async with http.post(url, data=b"{}") as resp:
                assert await resp.read() == b'{"ok": true}'
            await asyncio.sleep(0.05)
        assert srv.connections == 3


async def test_chunked_framing_split_at_every_byte_still_decodes() -> None:
    reply = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"a;ext=1\r\ndata: one\n\r\n10\r\ndata: two three\n\r\n0\r\nx-trailer: 1\r\n\r\n"
    )

    def make(srv: RawServer) -> Handler:
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await srv.read_request(r)
            for i in range(len(reply)):
                w.write(reply[i : i + 1])
                await w.drain()
                await asyncio.sleep(0)
            await asyncio.sleep(1)

        return handle

    async with serving(make) as (_, url), HttpClient() as http, http.post(url) as resp:
        assert await resp.read() == b"data: one\ndata: two three\n"
        assert resp.done


async def test_connections_idle_past_keepalive_are_closed_even_in_unused_pools() -> None:
    async with (
        serving(keep_answering(OK)) as (srv_a, url_a),
        serving(keep_answering(OK)) as (_, url_b),
        HttpClient(keepalive=0.2) as http,
    ):
        async with http.post(url_a, data=b"{}") as resp:
            await resp.read()
        assert srv_a.open_now == 1  # kept alive for reuse
        await asyncio.sleep(0.3)
        async with http.post(url_b, data=b"{}") as resp:  # only b is used from now on
            await resp.read()
        await asyncio.sleep(0.05)
        assert srv_a.open_now == 0, "a's idle connection outlived the keep-alive time"
