"""The Python ceiling: a bare aiohttp pass-through proxy, no parsing, no policy, no logging.

python bench/passthrough.py --port 9100 --upstream http://127.0.0.1:9000
"""

import argparse

import aiohttp
from aiohttp import web

HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


def build(upstream: str) -> web.Application:
    async def start(app: web.Application):  # type: ignore[no-untyped-def]
        conn = aiohttp.TCPConnector(limit=2000, keepalive_timeout=60)
        app["http"] = aiohttp.ClientSession(connector=conn, auto_decompress=False)
        yield
        await app["http"].close()

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def proxy(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        url = upstream + request.rel_url.path_qs
        async with request.app["http"].request(
            request.method, url, data=body, headers=headers
        ) as up:
            out_headers = {k: v for k, v in up.headers.items() if k.lower() not in HOP}
            if up.headers.get("content-type", "").startswith("text/event-stream"):
                resp = web.StreamResponse(status=up.status, headers=out_headers)
                await resp.prepare(request)
                async for data in up.content.iter_any():
                    await resp.write(data)
                await resp.write_eof()
                return resp
            return web.Response(status=up.status, body=await up.read(), headers=out_headers)

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.cleanup_ctx.append(start)
    app.router.add_get("/health", health)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True)
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(build(args.upstream.rstrip("/")), host=args.host, port=args.port,
                access_log=None, print=None, backlog=2048)  # fmt: skip
