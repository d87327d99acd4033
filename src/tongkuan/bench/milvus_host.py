"""The host side of a throwaway Milvus server (`tongkuan.bench.milvus`): its binary, the ports
it may take, what /proc says of its sockets and processes, and its embedded etcd."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import errno
import importlib.metadata
import importlib.util
import ipaddress
import json
import lzma
import os
import random
import shutil
import socket
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from tongkuan.bench.milvus_supervisor import LOOPBACK

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
