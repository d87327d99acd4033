"""A loopback-only HTTP server for picUrl tests: static files plus misbehaving endpoints."""

from __future__ import annotations

import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit


class _Handler(SimpleHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if parts.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", query["to"][0])
            self.end_headers()
        elif parts.path == "/big":
            size = int(query["bytes"][0])
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            if "nolength" not in query:
                self.send_header("Content-Length", str(size))
            self.end_headers()
            chunk = b"\xff" * 65536
            try:
                for _ in range(size // len(chunk) + 1):
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif parts.path == "/slow":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            try:
                for _ in range(60):
                    self.wfile.write(b"\xff")
                    self.wfile.flush()
                    time.sleep(0.5)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif parts.path == "/late":  # nothing at all until the time is up
            time.sleep(float(query["seconds"][0]))
            self._answer_small()
        elif parts.path == "/slow-headers":  # the headers one byte at a time, each within a read timeout
            try:
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                for byte in b"X-Padding: " + b"a" * 200:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.2)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif parts.path == "/slow-redirect":  # every hop answers after `seconds`, `hops` times
            time.sleep(float(query["seconds"][0]))
            hops = int(query["hops"][0])
            self.send_response(302)
            following = (
                f"/slow-redirect?seconds={query['seconds'][0]}&hops={hops - 1}" if hops > 1 else "/late?seconds=0"
            )
            self.send_header("Location", following)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif parts.path == "/bytes":
            body = self.server.blobs[query["name"][0]]
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            super().do_GET()

    def _answer_small(self) -> None:
        try:
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"\xff\xd8\xff\xd9")
        except (BrokenPipeError, ConnectionResetError):
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    blobs: dict[str, bytes]


class FileServer:
    """Serves `root` on 127.0.0.1 at a free port; `url(path)` names a file under it."""

    def __init__(self, root: Path) -> None:
        handler = lambda *a, **k: _Handler(*a, directory=str(root), **k)  # noqa: E731
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.blobs = {}
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def put(self, name: str, body: bytes) -> str:
        """Serve `body` at a URL and return it."""
        self._server.blobs[name] = body
        return self.url(f"bytes?name={name}")
