"""Loopback servers to measure against: picture hosts that behave or misbehave, and a
throwaway PostgreSQL cluster. Each listens on 127.0.0.1 only, at a free port."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- picture hosts -------------------------------------------------------------------------------


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
    """Serves `root` on 127.0.0.1 at a free port; `url(path)` names a file under it.

    Besides the files, misbehaving hosts for `picUrl`: `/redirect?to=URL`, `/big?bytes=N`
    (`&nolength`: no Content-Length), `/slow` (a byte every half second), `/late?seconds=S`
    (nothing until then), `/slow-headers` (the headers a byte at a time) and
    `/slow-redirect?seconds=S&hops=N` (each hop after S seconds); `put` serves given bytes.
    """

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


# -- PostgreSQL ----------------------------------------------------------------------------------


def _bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise FileNotFoundError(f"{name} not found: install Debian's postgresql")
    return found


def postgres_available() -> bool:
    """Whether PostgreSQL's server programs are installed here (`PostgresServer` needs them)."""
    try:
        _bin("initdb")
        _bin("postgres")
    except FileNotFoundError:
        return False
    return True


class PostgresServer:
    """`initdb` into `folder`, then `postgres` listening on 127.0.0.1 only, at a free port.

    `initdb` refuses to run as root, so as root the cluster belongs to `user` (Debian's
    package creates `postgres`). Durability settings are off unless `durable` (as in
    production): a throwaway cluster is thrown away. Needs psycopg (the `scale` extra).
    """

    def __init__(self, folder: Path | None = None, user: str = "postgres", durable: bool = False) -> None:
        # as root, the cluster's owner must reach its folder: pytest's are private to root
        self.folder = folder or Path(tempfile.mkdtemp(prefix="tongkuan-pg-"))
        self._owned = folder is None
        self.durable = durable
        self.data = self.folder / "pgdata"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._user = user if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql://tongkuan@127.0.0.1:{self.port}/tongkuan"

    def _run_as(self) -> dict[str, Any]:
        if self._user is None:
            return {}
        record = pwd.getpwnam(self._user)
        return {"user": record.pw_uid, "group": record.pw_gid, "extra_groups": []}

    def start(self) -> PostgresServer:
        import psycopg

        self.folder.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            record = pwd.getpwnam(self._user)
            os.chown(self.folder, record.pw_uid, record.pw_gid)
        log = self.folder / "postgres.log"
        if not self.data.exists():
            initdb = [_bin("initdb"), "-D", str(self.data), "-E", "UTF8", "--locale=C.UTF-8"]
            subprocess.run(
                [*initdb, "-U", "tongkuan", "--auth=trust", "--no-sync"],
                check=True,
                capture_output=True,
                **self._run_as(),
            )
        server = [_bin("postgres"), "-D", str(self.data), "-h", "127.0.0.1", "-p", str(self.port)]
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [*server, "-k", str(self.folder), "-c", "max_connections=200", *self._speed()],
                stdout=out,
                stderr=subprocess.STDOUT,
                **self._run_as(),
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited: {log.read_text()[-2000:]}")
            try:
                with psycopg.connect(f"postgresql://tongkuan@127.0.0.1:{self.port}/postgres", autocommit=True) as db:
                    if db.execute("SELECT 1 FROM pg_database WHERE datname = 'tongkuan'").fetchone() is None:
                        db.execute("CREATE DATABASE tongkuan")
                return self
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise RuntimeError(f"postgres did not come up: {log.read_text()[-2000:]}")

    def _speed(self) -> list[str]:
        if self.durable:
            return []
        return ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]

    def create_database(self, name: str) -> str:
        """A new empty database on this cluster; returns its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')  # names come from callers, not users
        return f"postgresql://tongkuan@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        """Shut the server down and, for a cluster in a folder of its own, remove it."""
        self.pause()
        if self._owned:
            shutil.rmtree(self.folder, ignore_errors=True)

    def pause(self) -> None:
        """Shut the server down, keeping its data: `start` brings it back on the same port."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # "fast" shutdown: SIGTERM would wait for clients
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
