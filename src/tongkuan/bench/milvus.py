"""A throwaway Milvus 2.3 standalone server for tests and benchmarks, kept on loopback.

The `milvus` PyPI package ships the server binary (lzma-packed) and a Python wrapper, but the
wrapper cannot be stopped from outside, leaves the embedded etcd on its default ports and lets
every component advertise the machine's first non-loopback address. So this module unpacks the
binary itself (once, into a shared cache), writes its own `milvus.yaml` and embedded-etcd config
into the server's folder, and runs `milvus run standalone` in its own process group.

Milvus 2.3 binds its gRPC servers and its metrics/health server to the wildcard address (`:port`)
whatever the config says; only the advertised addresses (`<role>.ip`) and etcd's listeners can be
set. So, where it can (root), the server runs in a private network namespace holding nothing but
`lo`, and its supervisor process relays the three ports the host needs (proxy, metrics/health,
etcd) from 127.0.0.1 on the host. Without that (`isolate=False`, or no namespace allowed), the
wildcard listeners remain, though every connection still stays on 127.0.0.1.

The supervisor is a program of its own (`milvus_supervisor.py`): it starts Milvus as its
child, gets both of them killed if the launching process dies, and exits with Milvus's status.
`milvus_host.py` holds the rest: the binary, the ports, /proc and etcd.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from tongkuan.bench import milvus_supervisor
from tongkuan.bench.milvus_host import (
    _DEFAULT_PORTS,
    _GRPC_ROLES,
    _RELAYED,
    _TCP_STATES,
    TcpSocket,
    _bindable,
    _bypass_proxies,
    _children,
    _direct,
    _hex_address,
    _host_sockets,
    _listen,
    _namespace,
    _package_dir,
    _pick_ports,
    _yaml,
    clear_stale_sessions,
    milvus_bin_dir,
    process_alive,
)
from tongkuan.bench.milvus_supervisor import LOOPBACK

_live: weakref.WeakSet[MilvusServer] = weakref.WeakSet()


class _IsolationUnavailable(Exception):
    """No new network namespace for us here (not root, no user namespaces)."""


class MilvusServer:
    """One Milvus 2.3 standalone server whose data, config and logs all live under `folder`.

    `isolate`: run it in a private network namespace; by default `$TONGKUAN_MILVUS_ISOLATE` (0/1)
    decides, else it is tried and dropped if the system refuses (not root). Use as a context
    manager or call `start()` / `stop()`; `kill()` simulates a crash, and `start()` on the same
    folder afterwards brings the data back (ports are kept when free, so usually the URI too).
    """

    def __init__(
        self,
        folder: Path,
        *,
        isolate: bool | None = None,
        log_level: str = "info",
        startup_timeout: float = 180.0,
    ) -> None:
        self.folder = Path(folder).resolve()
        setting = os.environ.get("TONGKUAN_MILVUS_ISOLATE", "")
        self._isolate_auto = isolate is None and setting not in ("0", "1")
        if isolate is None:
            isolate = setting == "1" if setting in ("0", "1") else True
        self.isolate = isolate
        self.log_level = log_level
        self.startup_timeout = startup_timeout
        self.ports: dict[str, int] = {}  # as Milvus binds them (inside its namespace when isolated)
        self.host_ports: dict[str, int] = {}  # where this process reaches proxy, metrics and etcd
        self.process: subprocess.Popen[bytes] | None = None  # the supervisor, Milvus's parent
        self.milvus_pid: int | None = None
        self.start_seconds: float | None = None
        self._log: IO[bytes] | None = None

    # -- public surface -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The proxy's port on the host's 127.0.0.1, the one clients use."""
        return self.host_ports["proxy"]

    @property
    def uri(self) -> str:
        """For `pymilvus.MilvusClient(uri=...)`."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int:
        """The Milvus process itself (not the supervisor)."""
        if self.milvus_pid is None:
            raise RuntimeError("Milvus is not running")
        return self.milvus_pid

    @property
    def isolated(self) -> bool:
        return self.running and self.isolate

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def log_path(self) -> Path:
        return self.folder / "logs" / "milvus.log"

    def __enter__(self) -> MilvusServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Write the configs, launch the server and return once pymilvus can talk to it."""
        if self.running:
            raise RuntimeError("Milvus is already running")
        began = time.monotonic()
        _bypass_proxies()
        bin_dir = milvus_bin_dir()
        for sub in ("configs", "data", "logs", "tmp"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        saved = self._saved_ports()
        self._log = self.log_path.open("ab")
        try:
            try:
                self._launch(bin_dir, saved)
            except _IsolationUnavailable as exc:
                if not self._isolate_auto:
                    raise RuntimeError(f"could not isolate Milvus: {exc}") from None
                self._note(f"no network namespace ({exc}); running without isolation")
                self.isolate = False
                self._launch(bin_dir, saved)
            _live.add(self)
            self._save_ports()
            self._wait_ready()
        except BaseException:
            if self.process is not None:
                self.kill()
            elif self._log is not None:
                self._log.close()
                self._log = None
            raise
        self.start_seconds = time.monotonic() - began

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds (a loaded collection can stall SIGTERM for minutes)."""
        if self.process is None:
            return
        self._signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=grace)
        self._finish()

    def kill(self) -> None:
        """SIGKILL the whole process group at once, as a crash would."""
        if self.process is not None:
            self._finish()

    def sockets(self) -> list[TcpSocket]:
        """Every TCP socket held by the server's process tree (supervisor included), from /proc.

        Sockets are matched by inode against the tables of every namespace the tree uses, plus
        this process's namespace (where the supervisor's relay listeners live).
        """
        pids = self._tree()
        inodes: set[str] = set()
        for pid in pids:
            with contextlib.suppress(OSError):
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    with contextlib.suppress(OSError):
                        target = os.readlink(fd)
                        if target.startswith("socket:["):
                            inodes.add(target[8:-1])
        tables: dict[str, str] = {}  # namespace -> a pid in it
        for member in ["self", *map(str, pids)]:
            with contextlib.suppress(OSError):
                tables.setdefault(_namespace(member), member)
        found: list[TcpSocket] = []
        for namespace, member in tables.items():
            for table in ("tcp", "tcp6"):
                with contextlib.suppress(OSError):
                    for line in Path(f"/proc/{member}/net/{table}").read_text().splitlines()[1:]:
                        fields = line.split()
                        if fields[9] not in inodes:
                            continue
                        (local, local_port), (remote, remote_port) = (f.rsplit(":", 1) for f in fields[1:3])
                        state = _TCP_STATES.get(int(fields[3], 16), fields[3])
                        found.append(
                            TcpSocket(
                                _hex_address(local),
                                int(local_port, 16),
                                _hex_address(remote),
                                int(remote_port, 16),
                                state,
                                namespace,
                            )
                        )
        return found

    def socket_addresses(self) -> set[str]:
        """IP addresses of the server tree's TCP sockets: local ends of all, remote ends of connected ones.

        (A listener's "remote" end is always 0.0.0.0 / ::, so it is left out.) Isolated, the
        Milvus wildcard listeners still show as "::" here; see `sockets()` for their namespace.
        """
        addresses = set()
        for sock in self.sockets():
            addresses.add(sock.local)
            if sock.state != "LISTEN":
                addresses.add(sock.remote)
        return addresses

    def rss_bytes(self, milvus_only: bool = False) -> int:
        """Resident memory of the server's process tree (or of the Milvus process alone)."""
        total = 0
        for pid in [self.pid] if milvus_only else self._tree():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        return total

    def log_tail(self, limit: int = 6000) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - limit))
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    # -- internals ------------------------------------------------------------------------------

    def _note(self, text: str) -> None:
        if self._log is not None:
            self._log.write(f"\n==== MilvusServer {time.strftime('%F %T')} {text}\n".encode())
            self._log.flush()

    def _launch(self, bin_dir: Path, saved: dict[str, dict[str, int]]) -> None:
        """Write the configs and start the supervisor, which starts Milvus (isolated: in its namespace)."""
        self.ports = dict(_DEFAULT_PORTS) if self.isolate else self._choose_ports(saved.get("milvus", {}))
        self._write_configs()
        env = self._environment(bin_dir)
        listeners = {name: _listen(saved.get("host", {}).get(name)) for name in _RELAYED} if self.isolate else {}
        if self.isolate:
            self.host_ports = {name: sock.getsockname()[1] for name, sock in listeners.items()}
        else:
            self.host_ports = {name: self.ports[name] for name in _RELAYED}
        self._note(f"start isolate={self.isolate} host_ports={self.host_ports} ports={self.ports}")
        ready_r, ready_w = os.pipe()
        supervisor = str(Path(milvus_supervisor.__file__).resolve())
        spec = {
            "command": [str(bin_dir / "milvus"), "run", "standalone"],
            "env": env,
            "isolate": self.isolate,
            "ready_fd": ready_w,
            "forwards": [[sock.fileno(), self.ports[name]] for name, sock in listeners.items()],
        }
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", supervisor, "--supervise", json.dumps(spec)],
                cwd=self.folder,
                env={"PATH": env["PATH"], "LANG": "C.UTF-8"},  # not Milvus's LD_LIBRARY_PATH
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                pass_fds=[ready_w, *(sock.fileno() for sock in listeners.values())],
                start_new_session=True,  # its own process group, so stop() reaches the whole tree
            )
        finally:
            os.close(ready_w)
            for sock in listeners.values():
                sock.close()
        with os.fdopen(ready_r) as ready:
            answer = ready.read()  # EOF once the supervisor has answered or died
        if not answer.startswith("ok "):
            self.process.wait()
            self.process = None
            if "unshare" in answer:
                raise _IsolationUnavailable(answer.removeprefix("error "))
            raise RuntimeError(f"could not start Milvus: {answer or 'the supervisor died'}\n{self.log_tail()}")
        self.milvus_pid = int(answer.split()[1])

    def _tree(self) -> list[int]:
        if self.process is None:
            return []
        tree, pids, i = _children(), [self.process.pid], 0
        while i < len(pids):
            pids.extend(tree.get(pids[i], []))
            i += 1
        return pids

    def _signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        group = self.process.pid  # the group id is the leader's pid (start_new_session)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, sig)
        # Then anything that left the group, but only once per process: a second SIGTERM makes
        # Milvus die at once instead of stopping.
        for pid in self._tree():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(pid) != group:
                    os.kill(pid, sig)

    def _finish(self) -> None:
        """SIGKILL whatever is left of the tree, reap it, close the log, drop Milvus's /tmp droppings."""
        assert self.process is not None
        if self.process.poll() is None:  # once it is reaped, its pid (and group id) may be reused
            self._signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=30)
        if self.milvus_pid is not None:
            # Isolated, Milvus is the supervisor's child: wait until it is gone (or a zombie, which
            # holds no files, locks or ports), so a start() right after a kill() finds etcd free.
            deadline = time.monotonic() + 30
            while process_alive(self.milvus_pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            # Milvus 2.3 writes /tmp/milvus/server_id_<pid> and /run/milvus/standalone.pid (hard-coded
            # paths, for `milvus stop`); drop ours, leave the folders, other servers may use them.
            with contextlib.suppress(OSError):
                os.unlink(f"/tmp/milvus/server_id_{self.milvus_pid}")
            with contextlib.suppress(OSError, ValueError):
                pid_file = Path("/run/milvus/standalone.pid")
                if int(pid_file.read_text().strip() or 0) == self.milvus_pid:
                    pid_file.unlink()
        self._note(f"stopped (exit {self.process.returncode})")
        self.process = None
        self.milvus_pid = None
        _live.discard(self)
        if self._log is not None:
            self._log.close()
            self._log = None

    def _saved_ports(self) -> dict[str, dict[str, int]]:
        """`{"milvus": ports Milvus bound (not isolated), "host": ports this process used}` of the last run."""
        with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
            saved = json.loads((self.folder / "ports.json").read_text())
            return {part: {str(k): int(v) for k, v in ports.items()} for part, ports in saved.items()}
        return {}

    def _save_ports(self) -> None:
        saved = self._saved_ports()
        saved["host"] = self.host_ports
        if not self.isolate:
            saved["milvus"] = self.ports
        (self.folder / "ports.json").write_text(json.dumps(saved, indent=1) + "\n")

    def _choose_ports(self, saved: dict[str, int]) -> dict[str, int]:
        """The last run's ports if all are still free (a stable URI), else fresh ones."""
        busy = {port for port, state in _host_sockets() if _TCP_STATES.get(state) not in ("TIME_WAIT", "CLOSE")}
        if set(saved) == set(_DEFAULT_PORTS) and all(p not in busy and _bindable(p) for p in saved.values()):
            return saved
        return dict(zip(_DEFAULT_PORTS, _pick_ports(len(_DEFAULT_PORTS)), strict=True))

    def _environment(self, bin_dir: Path) -> dict[str, str]:
        """A clean environment: Milvus reads *every* variable as a config override (PROXY_PORT=...)."""
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.folder),
            "TMPDIR": str(self.folder / "tmp"),
            "LANG": "C.UTF-8",
            "DEPLOY_MODE": "STANDALONE",
            "METRICS_PORT": str(self.ports["metrics"]),
            "MILVUSCONF": str(self.folder / "configs"),
            "LD_LIBRARY_PATH": ":".join(filter(None, [str(bin_dir), os.environ.get("LD_LIBRARY_PATH")])),
        }

    def _write_configs(self) -> None:
        folder, ports = self.folder, self.ports
        etcd_client = f"http://{LOOPBACK}:{ports['etcd_client']}"
        etcd_peer = f"http://{LOOPBACK}:{ports['etcd_peer']}"
        # Read by the embedded etcd (etcd.config.path): without it, it listens on localhost:2379/2380.
        etcd = {
            "name": "default",
            "data-dir": str(folder / "data" / "etcd"),
            "listen-client-urls": etcd_client,
            "advertise-client-urls": etcd_client,
            "listen-peer-urls": etcd_peer,
            "initial-advertise-peer-urls": etcd_peer,
            "initial-cluster": f"default={etcd_peer}",
            "initial-cluster-state": "new",
        }
        (folder / "configs" / "etcd.yaml").write_text(_yaml(etcd) + "\n")
        config: dict[str, Any] = {
            "etcd": {
                "endpoints": f"{LOOPBACK}:{ports['etcd_client']}",
                "rootPath": "by-dev",
                "metaSubPath": "meta",
                "use": {"embed": True},
                "config": {"path": str(folder / "configs" / "etcd.yaml")},
                "data": {"dir": str(folder / "data" / "etcd")},
                "log": {"level": "warn", "path": str(folder / "logs" / "etcd.log")},
            },
            "metastore": {"type": "etcd"},
            "localStorage": {"path": str(folder / "data" / "local") + "/"},
            "minio": {"address": LOOPBACK},
            "pulsar": {"address": LOOPBACK},
            "mq": {"type": "rocksmq"},
            "rocksmq": {"path": str(folder / "data" / "rocksmq")},
            "natsmq": {"server": {"storeDir": str(folder / "data" / "nats")}},
            "indexCoord": {"bindIndexNodeMode": {"enable": False, "address": f"{LOOPBACK}:{ports['indexNode']}"}},
            "log": {"level": self.log_level, "file": {"rootPath": ""}, "stdout": True},
            "trace": {"exporter": "stdout", "sampleFraction": 0},
            "common": {"storageType": "local"},
        }
        for role in _GRPC_ROLES:  # `ip` is what each component advertises in etcd
            config.setdefault(role, {}).update({"ip": LOOPBACK, "port": ports[role]})
        config["proxy"]["internalPort"] = ports["proxy_internal"]
        config["proxy"]["http"] = {"enabled": True}
        (folder / "configs" / "milvus.yaml").write_text(_yaml(config) + "\n")
        glog = (_package_dir() / "data" / "glog.conf").read_text()
        (folder / "configs" / "glog.conf").write_text(glog.replace("--log_dir=logs/", f"--log_dir={folder / 'logs'}/"))

    def _wait_ready(self) -> None:
        """Poll /healthz, then a real pymilvus call; clear stale sessions meanwhile; fail if Milvus dies."""
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        healthz = f"http://{LOOPBACK}:{self.host_ports['metrics']}/healthz"
        healthy = False
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"Milvus exited with {self.process.returncode} while starting; log tail:\n{self.log_tail()}"
                )
            with contextlib.suppress(OSError, ValueError, http.client.HTTPException):
                if cleared := clear_stale_sessions(self.host_ports["etcd_client"]):
                    self._note(f"cleared {cleared} stale etcd sessions")
            if not healthy:
                with (
                    contextlib.suppress(OSError, http.client.HTTPException),
                    _direct.open(healthz, timeout=2) as response,
                ):
                    healthy = b"OK" in response.read()
            if healthy and self._pymilvus_ok():
                return
            time.sleep(0.25)
        raise TimeoutError(f"Milvus not ready after {self.startup_timeout:.0f} s; log tail:\n{self.log_tail()}")

    def _pymilvus_ok(self) -> bool:
        from pymilvus import MilvusClient

        try:
            client = MilvusClient(uri=self.uri, timeout=5)
        except Exception:
            return False
        try:
            client.list_collections()
            return True
        except Exception:
            return False
        finally:
            with contextlib.suppress(Exception):
                client.close()


@atexit.register
def _kill_leftovers() -> None:
    """Never leave a server running after the interpreter exits (a failed test, a Ctrl-C)."""
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.kill()
