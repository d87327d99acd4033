"""A closed-loop HTTP load generator: N concurrent clients for S seconds; JSON summary.

    python bench/load.py URL_FILE --concurrency 8 --seconds 15

URL_FILE holds one request URL per line; clients take them round-robin. Runs in its own
process so the load does not share the server's interpreter.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from pathlib import Path

import httpx
import numpy as np


async def client(
    urls: itertools.cycle[str], deadline: float, http: httpx.AsyncClient, out: dict[str, list[float]]
) -> None:
    while time.perf_counter() < deadline:
        url = next(urls)
        started = time.perf_counter()
        try:
            response = await http.get(url)
            ok = response.status_code == 200 and response.json().get("code") == 200
            kind = "ok" if ok else f"http {response.status_code}/{response.json().get('code')}"
        except (httpx.HTTPError, ValueError) as exc:
            kind = type(exc).__name__
        out.setdefault(kind, []).append(time.perf_counter() - started)


async def run(urls: list[str], concurrency: int, seconds: float) -> dict[str, object]:
    results: dict[str, list[float]] = {}
    cycle = itertools.cycle(urls)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60.0, limits=limits) as http:
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(client(cycle, deadline, http, results) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    ok = np.array(results.get("ok", [])) * 1000
    errors = {k: len(v) for k, v in results.items() if k != "ok"}
    return {
        "concurrency": concurrency,
        "seconds": round(elapsed, 1),
        "requests": int(sum(len(v) for v in results.values())),
        "qps": round(len(ok) / elapsed, 2),
        "errors": errors,
        "p50_ms": round(float(np.percentile(ok, 50)), 1) if len(ok) else None,
        "p99_ms": round(float(np.percentile(ok, 99)), 1) if len(ok) else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("urls", type=Path)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    urls = [u for u in args.urls.read_text().splitlines() if u]
    print(json.dumps(asyncio.run(run(urls, args.concurrency, args.seconds))))


if __name__ == "__main__":
    main()
