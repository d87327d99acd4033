"""A throwaway PostgreSQL cluster on 127.0.0.1, for tests and benchmarks.

`initdb` refuses to run as root, so as root the cluster belongs to the `postgres` user
(Debian's package creates it). Durability settings are off: a test cluster is thrown away.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psycopg

from tests.conftest import free_port


def _bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise FileNotFoundError(f"{name} not found: install Debian's postgresql")
    return found


def available() -> bool:
    try:
        _bin("initdb")
        _bin("postgres")
    except FileNotFoundError:
        return False
    return True


class PostgresServer:
    """`initdb` into `folder`, then `postgres` listening on 127.0.0.1 only, at a free port."""

    def __init__(self, folder: Path | None = None, user: str = "postgres", durable: bool = False) -> None:
        # as root, the cluster's owner must reach its folder: pytest's are private to root
        self.folder = folder or Path(tempfile.mkdtemp(prefix="tongkuan-pg-"))
        self._owned = folder is None
        self.durable = durable  # fsync on, as in production (benchmarks); off for tests
        self.data = self.folder / "pgdata"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._user = user if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql://tongkuan@127.0.0.1:{self.port}/tongkuan"

    def _run_as(self) -> dict[str, object]:
        if self._user is None:
            return {}
        record = pwd.getpwnam(self._user)
        return {"user": record.pw_uid, "group": record.pw_gid, "extra_groups": []}

    def start(self) -> PostgresServer:
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
                **self._run_as(),  # type: ignore[arg-type]
            )
        server = [_bin("postgres"), "-D", str(self.data), "-h", "127.0.0.1", "-p", str(self.port)]
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [*server, "-k", str(self.folder), "-c", "max_connections=200", *self._speed()],
                stdout=out,
                stderr=subprocess.STDOUT,
                **self._run_as(),  # type: ignore[arg-type]
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
        with psycopg.connect(self.url, autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')  # names come from tests, not users
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
