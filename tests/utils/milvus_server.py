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

This file is also the supervisor's program (`python milvus_server.py --supervise SPEC`): it
starts Milvus as its child, gets both of them killed if the launching process dies, and exits
with Milvus's status.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import dataclasses
import errno
import fcntl
import http.client
import importlib.metadata
import importlib.util
import ipaddress
import json
import lzma
import os
import random
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import weakref
from pathlib import Path
from types import TracebackType
from typing import IO, Any

LOOPBACK = "127.0.0.1"
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1

# Ports of the default Milvus / etcd / MinIO / Pulsar / NATS layouts: never handed out on the host,
# so a throwaway server cannot collide with (or be mistaken for) a real one. Inside a private
# network namespace nothing else exists, so there the defaults themselves are used.
_DEFAULT_PORTS = {
    "proxy": 19530,
    "proxy_internal": 19529,
    "rootCoord": 53100,
    "queryCoord": 19531,
    "queryNode": 21123,
    "dataCoord": 13333,
    "dataNode": 21124,
    "indexNode": 21121,
    "metrics": 9091,
    "etcd_client": 2379,
    "etcd_peer": 2380,
}
_RESERVED_PORTS = frozenset(_DEFAULT_PORTS.values()) | {4222, 6650, 8080, 9000, 22930}
# Roles whose gRPC server takes `<role>.ip` / `<role>.port` in 2.3 (indexCoord lives in dataCoord).
_GRPC_ROLES = ("rootCoord", "proxy", "queryCoord", "queryNode", "dataCoord", "dataNode", "indexNode")
# What the host reaches through the supervisor's relay when the server is isolated.
_RELAYED = ("proxy", "metrics", "etcd_client")
_SESSION_PREFIX = b"by-dev/meta/session/"
_TCP_STATES = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
}

_live: weakref.WeakSet[MilvusServer] = weakref.WeakSet()


@dataclasses.dataclass(frozen=True)
class TcpSocket:
    """One TCP socket as /proc shows it; `namespace` is the network namespace it lives in."""

    local: str
    local_port: int
    remote: str
    remote_port: int
    state: str
    namespace: str


# -- the server binary ---------------------------------------------------------------------------


def _package_dir() -> Path:
    """The installed `milvus` package folder, found without importing it (its import builds servers)."""
    spec = importlib.util.find_spec("milvus")
    if spec is None or spec.origin is None:
        raise RuntimeError("the `milvus` package (embedded Milvus server) is not installed")
    return Path(spec.origin).parent


def milvus_bin_dir() -> Path:
    """Unpack the server binary and its libraries once per package version, into a shared cache.

    Unpacking takes a few seconds and ~250 MB, so it is not repeated per server folder. The cache
    is `$TONGKUAN_MILVUS_BIN_DIR` if set, else `~/.cache/tongkuan/milvus-<version>`; it is filled
    under a temporary name and renamed, so a half-written cache is never used.
    """
    version = importlib.metadata.version("milvus")
    packed = _package_dir() / "data" / "bin"
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tongkuan" / f"milvus-{version}"
    target = Path(os.environ.get("TONGKUAN_MILVUS_BIN_DIR") or default)
    if (target / "complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        for source in sorted(packed.glob("*.lzma")):
            out = staging / source.name.removesuffix(".lzma")
            with lzma.open(source) as src, out.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            out.chmod(0o755)
        (staging / "complete").write_text(version + "\n")
        try:
            staging.rename(target)
        except OSError as exc:  # another process finished first
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not (target / "complete").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


# -- ports ---------------------------------------------------------------------------------------


def _host_sockets() -> list[tuple[int, int]]:
    """(local port, state) of every TCP socket in this network namespace, on any address."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                found.append((int(fields[1].rsplit(":", 1)[1], 16), int(fields[3], 16)))
    return found


def _bindable(port: int) -> bool:
    """Whether a listener can bind `port` now (SO_REUSEADDR, as Go's listeners, so TIME_WAIT is no obstacle)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _pick_ports(count: int) -> list[int]:
    """Free ports below the kernel's ephemeral range, so no outgoing connection can take one first.

    Milvus 2.3 listens on the wildcard address, so a port counts as taken if any socket on any
    address uses it, not just one on 127.0.0.1.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    low = max(low, 12000)
    used = {port for port, _ in _host_sockets()} | _RESERVED_PORTS
    chosen: list[int] = []
    for port in random.sample(range(10000, low), low - 10000):
        if port not in used and _bindable(port):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise RuntimeError("no free TCP ports left for Milvus")


def _listen(port: int | None) -> socket.socket:
    """A listener on 127.0.0.1: `port` if it is free, else any port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((LOOPBACK, port or 0))
    except OSError:
        sock.bind((LOOPBACK, 0))
    sock.listen(128)
    return sock


# -- /proc ---------------------------------------------------------------------------------------


def _hex_address(text: str) -> str:
    """An address from /proc/net/tcp{,6} ("0100007F" or 32 hex digits, each 32-bit word in host order)."""
    raw = bytes.fromhex(text)
    packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(packed)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _namespace(pid: int | str) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")


def process_alive(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def namespace_interfaces(pid: int | str = "self") -> set[str]:
    """Network interfaces of the namespace `pid` is in ({"lo"} for an isolated server)."""
    lines = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    return {line.split(":", 1)[0].strip() for line in lines}


# -- the supervisor (runs as its own process) ----------------------------------------------------


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    """SIGKILL this process when its parent dies, so a killed test run leaves no server behind."""
    _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _bring_up_loopback() -> None:
    """`ip link set lo up` in a fresh namespace, by ioctl (no iproute2 needed)."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(sock, siocgifflags, request))[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sh22x", b"lo", flags | iff_up))


def _pump(source: socket.socket, sink: socket.socket) -> None:
    buffer = memoryview(bytearray(1 << 18))
    try:
        while True:
            count = source.recv_into(buffer)
            if not count:
                break
            sink.sendall(buffer[:count])
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def _relay(client: socket.socket, port: int) -> None:
    """Connect to `port` on the server's loopback (this thread is in its namespace) and pump both ways."""
    try:
        upstream = socket.create_connection((LOOPBACK, port), timeout=10)
    except OSError:
        client.close()
        return
    upstream.settimeout(None)
    for sock in (client, upstream):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def _supervise(spec: dict[str, Any]) -> int:
    """Run Milvus as a child that dies with us; isolated, in a new network namespace with a relay.

    `spec`: command and env (Milvus's), isolate, ready_fd (where "ok <pid>" or "error ..." is
    written) and forwards ([listening fd on the host, port inside]). The listeners were opened on
    the host by the parent; after `setns`, new sockets (the relay's upstream ones) belong to
    Milvus's namespace. Exits with Milvus's exit status.
    """
    _die_with_parent()
    for fd in [spec["ready_fd"], *(fd for fd, _ in spec["forwards"])]:
        os.set_inheritable(fd, False)  # Milvus must not hold them (the parent waits for EOF on ready_fd)
    ready = os.fdopen(spec["ready_fd"], "w")
    # SIGTERM is for Milvus (same process group); this process exits when Milvus does.
    signal.signal(signal.SIGTERM, lambda *_: None)
    status_r, status_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: (own namespace with lo up), then become Milvus
        try:
            os.close(status_r)
            _die_with_parent()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            if spec["isolate"]:
                if _libc().unshare(CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET): " + os.strerror(ctypes.get_errno()))
                _bring_up_loopback()
            os.write(status_w, b"ok")
            os.close(status_w)
            os.execve(spec["command"][0], spec["command"], spec["env"])
        except BaseException as exc:  # report it, never return into the parent's code
            with contextlib.suppress(OSError):
                os.write(status_w, f"error {exc}".encode())
        os._exit(127)
    os.close(status_w)
    with os.fdopen(status_r, "rb") as status:
        answer = status.read().decode(errors="replace")
    if answer != "ok":
        ready.write(answer or "error the child died before exec")
        ready.close()
        os.waitpid(pid, 0)
        return 1
    if spec["isolate"]:
        namespace = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        if _libc().setns(namespace, CLONE_NEWNET) != 0:
            ready.write(f"error setns: {os.strerror(ctypes.get_errno())}")
            ready.close()
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return 1
        os.close(namespace)
    ready.write(f"ok {pid}\n")
    ready.close()

    selector = selectors.DefaultSelector()
    for fd, port in spec["forwards"]:
        listener = socket.socket(fileno=fd)
        selector.register(listener, selectors.EVENT_READ, port)
    pidfd = os.pidfd_open(pid)
    selector.register(pidfd, selectors.EVENT_READ, None)
    while True:
        for key, _ in selector.select():
            if key.data is None:  # Milvus exited
                _, code = os.waitpid(pid, 0)
                return os.waitstatus_to_exitcode(code)
            assert isinstance(key.fileobj, socket.socket)
            with contextlib.suppress(OSError):
                client, _ = key.fileobj.accept()
                threading.Thread(target=_relay, args=(client, key.data), daemon=True).start()


# -- etcd housekeeping ---------------------------------------------------------------------------


# urllib would send even 127.0.0.1 requests to $http_proxy; this opener never uses a proxy.
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _bypass_proxies() -> None:
    """Keep gRPC (pymilvus) from tunnelling 127.0.0.1 through a configured HTTP proxy."""
    if not any(
        os.environ.get(name) for name in ("http_proxy", "https_proxy", "grpc_proxy", "HTTP_PROXY", "HTTPS_PROXY")
    ):
        return
    for name in ("no_proxy", "NO_PROXY"):
        hosts = [h for h in os.environ.get(name, "").split(",") if h]
        os.environ[name] = ",".join(hosts + [h for h in (LOOPBACK, "localhost") if h not in hosts])


def _etcd(port: int, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """One call to etcd's JSON gateway (served on the client port, no etcd client library needed)."""
    request = urllib.request.Request(
        f"http://{LOOPBACK}:{port}/v3/{path}", data=json.dumps(body).encode(), method="POST"
    )
    with _direct.open(request, timeout=3) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def clear_stale_sessions(etcd_port: int) -> int:
    """Delete session keys a killed Milvus left behind; returns how many.

    After a SIGKILL the old sessions (keyed by role, e.g. `rootcoord`) stay in etcd until their
    leases expire, and a restarted coordinator retries its compare-and-swap registration until
    then: about 80 s. Each start takes a new, higher server ID and its non-coordinator components
    register at once, so any session with a lower ID than the highest present is stale. Each is
    deleted only if unchanged since it was read.
    """
    end = _SESSION_PREFIX[:-1] + bytes([_SESSION_PREFIX[-1] + 1])
    found = _etcd(etcd_port, "kv/range", {"key": _b64(_SESSION_PREFIX), "range_end": _b64(end)}).get("kvs") or []
    sessions = []
    for kv in found:
        try:
            sessions.append((int(json.loads(base64.b64decode(kv["value"]))["ServerID"]), kv))
        except (ValueError, KeyError, TypeError):
            continue  # the `id` counter and anything else that is not a session
    newest = max((server_id for server_id, _ in sessions), default=0)
    cleared = 0
    for server_id, kv in sessions:
        if server_id >= newest:
            continue
        compare = {"key": kv["key"], "target": "MOD", "result": "EQUAL", "mod_revision": kv["mod_revision"]}
        txn = {"compare": [compare], "success": [{"request_delete_range": {"key": kv["key"]}}]}
        if _etcd(etcd_port, "kv/txn", txn).get("succeeded"):
            cleared += 1
    return cleared


# -- the server ----------------------------------------------------------------------------------


def _yaml(value: dict[str, Any], indent: int = 0) -> str:
    """Enough YAML for nested mappings of scalars (strings JSON-quoted, which YAML reads as-is)."""
    lines = []
    pad = "  " * indent
    for key, item in value.items():
        if isinstance(item, dict):
            lines.append(f"{pad}{key}:\n{_yaml(item, indent + 1)}")
        elif isinstance(item, bool):
            lines.append(f"{pad}{key}: {'true' if item else 'false'}")
        elif isinstance(item, int | float):
            lines.append(f"{pad}{key}: {item}")
        else:
            lines.append(f"{pad}{key}: {json.dumps(str(item))}")
    return "\n".join(lines)


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
        spec = {
            "command": [str(bin_dir / "milvus"), "run", "standalone"],
            "env": env,
            "isolate": self.isolate,
            "ready_fd": ready_w,
            "forwards": [[sock.fileno(), self.ports[name]] for name, sock in listeners.items()],
        }
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", str(Path(__file__).resolve()), "--supervise", json.dumps(spec)],
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


if __name__ == "__main__" and sys.argv[1:2] == ["--supervise"]:
    sys.exit(_supervise(json.loads(sys.argv[2])))
