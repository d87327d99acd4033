"""The supervisor of a throwaway Milvus server (`tongkuan.bench.milvus`), run as its own
program: `python -I milvus_supervisor.py --supervise SPEC`.

It starts Milvus as its child, in a private network namespace holding nothing but `lo` where
it can, relays the ports the host needs from 127.0.0.1 on the host into it, gets both of them
killed if the launching process dies, and exits with Milvus's status. Run isolated (`-I`), it
imports the standard library only.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import selectors
import signal
import socket
import struct
import sys
import threading
from typing import Any

LOOPBACK = "127.0.0.1"
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1


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


if __name__ == "__main__" and sys.argv[1:2] == ["--supervise"]:
    sys.exit(_supervise(json.loads(sys.argv[2])))
