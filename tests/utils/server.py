"""`tongkuan serve` in its own process, for tests that restart, kill or measure it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import APP_KEY, APP_SECRET, free_port


class Server:
    def __init__(self, data_dir: Path, model: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.model = model
        self.env = env or {}
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "TONGKUAN_APPS": f"{APP_KEY}:{APP_SECRET}",
            "TONGKUAN_ALLOW_LOOPBACK_FETCH": "1",
            "TONGKUAN_MODEL": self.model,
            "TONGKUAN_RATE_LIMIT_QPS": "0",
            **self.env,
        }
        args = ["serve", "--data-dir", str(self.data_dir), "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = subprocess.Popen([sys.executable, "-m", "tongkuan.cli", *args], env=env)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError("tongkuan serve did not come up")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(timeout=30)

    def peak_rss_mb(self) -> float:
        """The process's high-water mark of resident memory (VmHWM)."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM")

    def top_ids(self, url: str, size: int = 5) -> list[str]:
        params = {"appKey": APP_KEY, "appSecret": APP_SECRET, "picUrl": url, "pageSize": str(size)}
        body = httpx.get(f"http://127.0.0.1:{self.port}/taobao/image-search/url", params=params, timeout=60).json()
        assert body["code"] == 200, body
        return [item["itemId"] for item in body["data"]["data"]]
