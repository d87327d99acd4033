"""Sustained load: 32 clients for minutes against `tongkuan serve`, watching errors and memory.

    python bench/soak.py [--seconds 300] [--clients 32] [--model efficientnet-lite2]

Builds a small catalog (grocery iconic shots), starts the service in its own process,
runs `bench/load.py` in another, samples the server's RSS every few seconds, and prints a
JSON summary last: requests, QPS, errors by kind (429s counted apart), p50/p99, and RSS
growth from the first sample after warm-up (10 % into the run, at least 10 s) to the end.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from perf import APP, Server, free_port, iconic_catalog  # bench/perf.py

from tongkuan.bench import FileServer

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--model", default="efficientnet-lite2")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="tongkuan-soak-"))
    data_dir, rows = iconic_catalog(args.data, work, args.model)
    files = FileServer(args.data)
    files.start()
    server = Server(data_dir, free_port())
    server.start()
    base = f"http://127.0.0.1:{server.port}/taobao/image-search/url"
    val = [r["path"] for r in rows if r["split"] == "val"][:50]
    urls = [
        str(httpx.URL(base, params={"appKey": APP[0], "appSecret": APP[1], "picUrl": files.url(f"grocery_store/{p}")}))
        for p in val
    ]
    (work / "urls.txt").write_text("\n".join(urls))
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        started = time.monotonic()
        while not stop.wait(2.0):
            samples.append((time.monotonic() - started, server.rss_mb()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    load = subprocess.run(
        [sys.executable, str(REPO / "bench" / "load.py"), str(work / "urls.txt"), "--concurrency", str(args.clients),
         "--seconds", str(args.seconds)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    stop.set()
    sampler.join()
    server.stop()
    files.stop()
    result = json.loads(load.stdout.strip().splitlines()[-1])
    warm = max(10.0, 0.1 * args.seconds)
    after_warmup = [rss for t, rss in samples if t >= warm] or [samples[-1][1]]
    result["rss_mb_after_warmup"] = after_warmup[0]
    result["rss_mb_end"] = after_warmup[-1]
    result["rss_growth"] = round(after_warmup[-1] / after_warmup[0] - 1, 4)
    result["errors_other_than_429"] = sum(n for kind, n in result["errors"].items() if "429" not in kind)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
