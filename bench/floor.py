"""The proxy floor: the least any Python proxy on the router's server stack can add.

One ASGI callable served exactly as the local host serves the router (uvicorn, uvloop, httptools,
no access log) that forwards the request body to the upstream through one pooled aiohttp session
(the router's upstream client) and returns the answer's bytes. No framework, no auth, no parsing,
no routing, no logging: what it adds over the upstream is the cost of being a Python HTTP proxy on
this machine, so the router's added latency minus the floor's is the cost of the router's own work.

    python -m bench.floor --port 8102 --upstream http://127.0.0.1:8101/v1
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp
import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def build(upstream: str) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    target = upstream.rstrip("/") + "/chat/completions"
    session: aiohttp.ClientSession | None = None

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal session
        if scope["type"] == "lifespan":
            await receive()  # lifespan.startup
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            if session is not None:
                await session.close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if scope["method"] != "POST":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})
            return
        if session is None:
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        async with session.post(target, data=body, headers={"content-type": "application/json"}) as resp:
            answer = await resp.read()
            status = resp.status
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
        )
        await send({"type": "http.response.body", "body": answer})

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the upstream's base URL, ending in /v1")
    args = parser.parse_args(argv)
    uvicorn.run(
        build(args.upstream),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
