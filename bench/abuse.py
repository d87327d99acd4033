"""Slow picture hosts and decode bombs against `tongkuan serve`, while other clients search.

    python bench/abuse.py [--seconds 60] [--slow-clients 40] [--bombers 8] [--model efficientnet-lite2]

Everything stays on 127.0.0.1. Builds a small catalog (grocery iconic shots), and a picture
server with misbehaving endpoints; then, twice (the service with its limits on downloads and
decode memory turned off, then with its defaults), starts the service in its own process
and, from addresses of their own (`X-Forwarded-For`, believed from loopback, named here as
the service's proxy with `TONGKUAN_FORWARDED_ALLOW_IPS`):

- a shopper searches, one request after another, by `picUrl` (a V2 search) and through the
  search page (upload a photo, search it by imageId), and calls `/health`: first alone (the
  baseline), then during the attack;
- `--slow-clients` attackers, without credentials, each ask the search page over and over
  to fetch a picture from a slow host: one that answers after 30 s, one that trickles its
  headers a byte at a time, one whose redirects each take 2.5 s;
- `--bombers` attackers, without credentials, each send the search page over and over a
  picture of a few hundred bytes that declares 4096x4096 pixels: WebP, PNG or progressive
  JPEG files, or a PNG by URL.

Each attacker sends at most the page's default rate for one address (2 requests a second).
Prints one JSON line: for each run, the shopper's latencies (p50, p95, max) and failures in
both phases, the ratio of the attack's p50 to the baseline's, what the attackers were
answered (by code), and the server's peak RSS before and after the attack. The attackers'
client threads share the machine's cores with the service.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx
from perf import APP, Server, free_port, iconic_catalog, latency_summary  # bench/perf.py
from PIL import Image

from tongkuan.bench import FileServer

REPO = Path(__file__).resolve().parent.parent

SLOW_PATHS = ["late?seconds=30", "slow-headers", "slow-redirect?seconds=2.5&hops=4"]
BOMB_SIDE = 4096
# Each attacker keeps within the page's default rate for one address (2 a second): a flood of
# requests is a proxy's business; this measures what requests the service accepts can hold.
PACE_S = 0.5


def bomb(fmt: str) -> bytes:
    """A small file declaring BOMB_SIDE² pixels: lossless WebP, PNG, or a progressive JPEG
    (whose decoder holds coefficient buffers over the whole frame, however much it reduces)."""
    out = io.BytesIO()
    picture = Image.new("RGB", (BOMB_SIDE, BOMB_SIDE), (250, 250, 250))
    options: dict[str, object] = {
        "WEBP": {"lossless": True},
        "PROGRESSIVE": {"progressive": True, "quality": 5, "subsampling": 0},
    }.get(fmt, {})
    picture.save(out, "JPEG" if fmt == "PROGRESSIVE" else fmt, **options)
    return out.getvalue()


class Shopper:
    """Searches as a shopper does, one request at a time, timing each."""

    def __init__(self, base: str, photos: list[Path], photo_urls: list[str]) -> None:
        self.http = httpx.Client(base_url=base, timeout=120, headers={"X-Forwarded-For": "198.51.100.7"})
        self.photos, self.photo_urls = photos, photo_urls
        self.turn = 0
        self.reset()

    def reset(self) -> None:
        """Forget what was timed so far (a new phase starts)."""
        self.latencies: dict[str, list[float]] = {"v2_search": [], "page_search": [], "health": []}
        self.failures: Counter[str] = Counter()

    def once(self) -> None:
        i = self.turn % len(self.photos)
        self.turn += 1
        params = {"appKey": APP[0], "appSecret": APP[1], "picUrl": self.photo_urls[i], "pageSize": "10"}
        self._timed("v2_search", lambda: self.http.get("/taobao/image-search/url", params=params))

        def page() -> httpx.Response:
            files = {"image": (self.photos[i].name, self.photos[i].read_bytes(), "image/jpeg")}
            uploaded = self.http.post("/web/api/upload", files=files)
            if uploaded.json()["code"] != 200:
                return uploaded
            return self.http.get("/web/api/search", params={"imageId": uploaded.json()["data"]["imageId"]})

        self._timed("page_search", page)
        self._timed("health", lambda: self.http.get("/health"))

    def _timed(self, name: str, call: object) -> None:
        started = time.perf_counter()
        answer: httpx.Response = call()  # type: ignore[operator]
        self.latencies[name].append(time.perf_counter() - started)
        if answer.status_code != 200:
            self.failures[f"{name} {answer.status_code}"] += 1

    def report(self) -> dict[str, object]:
        out: dict[str, object] = {name: latency_summary(values) for name, values in self.latencies.items() if values}
        out["failures"] = dict(self.failures)
        return out


def upload_url(http: httpx.Client, url: str) -> httpx.Response:
    """The search page's upload of a picture by its URL (fetched by the service): no credentials."""
    return http.post("/web/api/upload", data={"url": url})


def upload(http: httpx.Client, data: bytes, name: str) -> httpx.Response:
    """The search page's upload of a picture file: no credentials."""
    return http.post("/web/api/upload", files={"image": (name, data, "application/octet-stream")})


def attack(
    base: str,
    address: str,
    make_request: Callable[[httpx.Client], httpx.Response],
    answers: Counter[str],
    stop: threading.Event,
) -> None:
    with httpx.Client(base_url=base, timeout=120, headers={"X-Forwarded-For": address}) as http:
        while not stop.is_set():
            try:
                answer = make_request(http)
                answers[str(answer.status_code)] += 1
            except httpx.HTTPError as exc:
                answers[type(exc).__name__] += 1
            stop.wait(PACE_S)


# The limits this measures, turned off (as good as): what the same attack does without them.
UNLIMITED = {
    "TONGKUAN_FETCH_CONCURRENCY": "100000",
    "TONGKUAN_FETCH_PER_CLIENT": "100000",
    "TONGKUAN_FETCH_PER_HOST": "100000",
    "TONGKUAN_DECODE_MEMORY_MB": "1000000",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--slow-clients", type=int, default=40)
    parser.add_argument("--bombers", type=int, default=8)
    parser.add_argument("--baseline-rounds", type=int, default=20)
    parser.add_argument("--model", default="efficientnet-lite2")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="tongkuan-abuse-"))
    data_dir, rows = iconic_catalog(args.data, work, args.model)
    files = FileServer(args.data)
    files.start()
    try:
        result: dict[str, object] = {
            "model": args.model,
            "seconds": args.seconds,
            "slow_clients": args.slow_clients,
            "bombers": args.bombers,
        }
        for name, env in (("without_limits", UNLIMITED), ("default_limits", {})):
            result[name] = run(args, data_dir, files, rows, env)
        print(json.dumps(result))
    finally:
        files.stop()


def run(
    args: argparse.Namespace, data_dir: Path, files: FileServer, rows: list[dict[str, str]], env: dict[str, str]
) -> dict[str, object]:
    """The shoppers alone, then under attack, against a service started with `env`."""
    webp, png, progressive = bomb("WEBP"), bomb("PNG"), bomb("PROGRESSIVE")
    png_url = files.put("bomb-png", png)
    # attackers pace themselves; their addresses come in X-Forwarded-For, believed from loopback
    settings = {"TONGKUAN_WEB_RATE_LIMIT_QPS": "0", "TONGKUAN_FORWARDED_ALLOW_IPS": "127.0.0.1", **env}
    server = Server(data_dir, free_port(), settings)
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    photos = [args.data / "grocery_store" / r["path"] for r in rows if r["split"] == "val"][:40]
    # the same picture host as the attackers' (however spelt, one host): the shopper's searches by
    # picUrl carry credentials, held to the app's share of the downloads, not to the page's per-host cap
    photo_urls = [files.url(f"grocery_store/{p.relative_to(args.data / 'grocery_store')}") for p in photos]
    shopper = Shopper(base, photos, photo_urls)
    stop = threading.Event()
    try:
        shopper.once()  # warm up
        shopper.reset()
        for _ in range(args.baseline_rounds):
            shopper.once()
        baseline = shopper.report()
        rss_before = server.peak_rss_mb()

        answers: dict[str, Counter[str]] = {"slow_hosts": Counter(), "bombs": Counter()}
        threads: list[tuple[str, Callable[[httpx.Client], httpx.Response], Counter[str]]] = []
        for i in range(args.slow_clients):
            slow = partial(upload_url, url=files.url(SLOW_PATHS[i % len(SLOW_PATHS)]))
            threads.append((f"203.0.113.{i % 250}", slow, answers["slow_hosts"]))
        for i in range(args.bombers):
            kinds = [
                partial(upload, data=webp, name="b.webp"),
                partial(upload, data=png, name="b.png"),
                partial(upload, data=progressive, name="b.jpg"),
            ]
            send = kinds[i % 3] if i % 4 else partial(upload_url, url=png_url)
            threads.append((f"192.0.2.{i % 250}", send, answers["bombs"]))
        running = [
            threading.Thread(target=attack, args=(base, address, call, counter, stop), daemon=True)
            for address, call, counter in threads
        ]
        for thread in running:
            thread.start()
        time.sleep(2.0)  # the attack under way
        shopper.reset()
        ends = time.monotonic() + args.seconds
        while time.monotonic() < ends:
            shopper.once()
        under_attack = shopper.report()
        stop.set()
        rss_after = server.peak_rss_mb()
    finally:
        stop.set()
        shopper.http.close()
        server.stop()
    ratios = {
        name: round(under_attack[name]["p50_ms"] / baseline[name]["p50_ms"], 2)  # type: ignore[index]
        for name in ("v2_search", "page_search", "health")
    }
    return {
        "shoppers_baseline": baseline,
        "shoppers_under_attack": under_attack,
        "p50_ratio_attack_to_baseline": ratios,
        "attackers_answered": {kind: dict(counter) for kind, counter in answers.items()},
        "peak_rss_mb_before": rss_before,
        "peak_rss_mb_after": rss_after,
    }


if __name__ == "__main__":
    main()
