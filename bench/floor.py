"""The floor: the least one extra Python hop can cost on DEMI's HTTP stack.

A bare pass-through proxy (aiohttp server, one pooled aiohttp ClientSession): read the body,
forward it to the one upstream, stream the reply back as it arrives. No parsing, no routing,
no failover. ``python -m bench.floor --port N --upstream http://127.0.0.1:M``.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})
SESSION = web.AppKey("session", ClientSession)


async def forward(request: web.Request) -> web.StreamResponse:
    """Send the request upstream and copy the reply back chunk by chunk."""
    body = await request.read()
    async with request.app[SESSION].request(
        request.method, request.path_qs, data=body,
        headers={"Content-Type": request.headers.get("Content-Type", "application/json")},
    ) as upstream:
        headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
        reply = web.StreamResponse(status=upstream.status, headers=headers)
        await reply.prepare(request)
        async for chunk in upstream.content.iter_any():
            await reply.write(chunk)
        await reply.write_eof()
        return reply


def make_app(upstream: str) -> web.Application:
    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        app[SESSION] = ClientSession(
            base_url=upstream, auto_decompress=False, timeout=ClientTimeout(total=None),
            connector=TCPConnector(limit=256),
        )
        yield
        await app[SESSION].close()

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Bare pass-through proxy (the bench floor).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:11434")
    args = parser.parse_args()
    web.run_app(make_app(args.upstream), host=args.host, port=args.port, access_log=None,
                print=None)


if __name__ == "__main__":
    main()
