"""The gateway's CPU per proxied request in this process: `python -m bench.profile`.

`make bench` reads the CPU a gateway process used under wrk, which moves with whatever else
shares the cores. This builds the gateway app in-process (access log and metrics on, as in
production) in front of a real stub upstream and a real identity service, calls it the way
uvicorn does for `--requests` proxied requests, `--concurrency` at a time, and prints the CPU
per request of the gateway's own code, aiohttp's client included and uvicorn's protocol left
out: the figure to compare one change with the next. `--profile FILE` writes a cProfile of
the measured requests and prints the top functions.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import uvloop
from starlette.types import ASGIApp, Message

from bench.stack import PASSWORD, USERNAME, upstreams

PATH = "/api/trading/orders/42"


def _scope(headers: list[tuple[bytes, bytes]], port: int) -> dict[str, object]:
    # What uvicorn's httptools protocol hands the app for wrk's GET.
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", port),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8000"), *headers],
        "state": {},
    }


async def _one(app: ASGIApp, headers: list[tuple[bytes, bytes]], port: int) -> int:
    status = 0
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # a client that stays connected
        sent = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(_scope(headers, port), receive, send)
    return status


async def _drive(
    app: ASGIApp, headers: list[tuple[bytes, bytes]], requests: int, concurrency: int
) -> None:
    remaining = requests

    async def worker(port: int) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            status = await _one(app, headers, port)
            if status != 200:
                raise SystemExit(f"the gateway answered {status}")

    await asyncio.gather(*(worker(40000 + n) for n in range(concurrency)))


async def measure(
    env: dict[str, str],
    credential: tuple[str, str] | None,
    *,
    requests: int,
    concurrency: int,
    rounds: int,
    profile: str | None,
    alternate: bool = False,
) -> list[float]:
    """Return the CPU seconds per request of each round (after one warm-up round)."""
    os.environ.update(env)
    from services.api_gateway.app import create_app

    app = create_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            login = await client.post(
                "/auth/token", json={"username": USERNAME, "password": PASSWORD}
            )
            login.raise_for_status()
        name, value = credential or ("authorization", f"Bearer {login.json()['access_token']}")
        headers = [(b"user-agent", b"wrk"), (name.encode(), value.encode())]
        await _drive(app, headers, min(requests, 2000), concurrency)
        figures = []
        front = app.front
        profiler = cProfile.Profile(time.process_time) if profile else None
        for n in range(rounds):
            if alternate:
                # Odd rounds take the long way: every middleware, then ProxyMount.
                app.front = front if n % 2 == 0 else None
            if profiler is not None:
                profiler.enable()
            started = time.process_time()
            await _drive(app, headers, requests, concurrency)
            figures.append((time.process_time() - started) / requests)
            if profiler is not None:
                profiler.disable()
        if profiler is not None and profile:
            profiler.dump_stats(profile)
            stats = pstats.Stats(profiler)
            stats.sort_stats("tottime").print_stats(25)
            stats.sort_stats("cumulative").print_stats(40)
    return figures


def main(argv: list[str] | None = None) -> None:
    """Print the gateway's CPU microseconds per proxied request, each round and the best."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000, help="per round (20000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds measured (3)")
    parser.add_argument("--concurrency", type=int, default=64, help="requests at a time (64)")
    parser.add_argument("--api-key", action="store_true", help="X-API-Key instead of a JWT")
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the rounds")
    parser.add_argument(
        "--front-ab",
        action="store_true",
        help="alternate rounds with the `/api/` front door on and off (the middlewares)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lct-profile-") as tmp, upstreams(Path(tmp)) as up:
        credential = ("x-api-key", up.api_key) if args.api_key else None
        figures = uvloop.run(
            measure(
                {**up.env, "GATEWAY_ACCESS_LOG": str(Path(tmp) / "gateway-access.log")},
                credential,
                requests=args.requests,
                concurrency=args.concurrency,
                rounds=args.rounds,
                profile=args.profile,
                alternate=args.front_ab,
            )
        )
    path = "API key" if args.api_key else "JWT"
    if args.front_ab:
        on, off = figures[0::2], figures[1::2]
        pairs = sorted(b - a for a, b in zip(on, off, strict=False))
        print(
            f"front on: median {statistics.median(on) * 1e6:.1f} µs, off (middlewares): "
            f"median {statistics.median(off) * 1e6:.1f} µs; off - on per pair, median "
            f"{pairs[len(pairs) // 2] * 1e6:.1f} µs"
        )
    rounds = ", ".join(f"{figure * 1e6:.1f}" for figure in figures)
    print(
        f"gateway CPU per {path}-proxied request (µs): rounds {rounds}; best {min(figures) * 1e6:.1f}"
    )


if __name__ == "__main__":
    main()
