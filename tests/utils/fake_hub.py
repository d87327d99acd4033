"""A model hub on loopback that speaks what `huggingface_hub` asks of the Hugging Face Hub
(repository info, the file tree, files resolved by revision with their commit and ETag,
ranged requests), so `tongkuan models pull` is tested end to end with no network. Failures
to test are switches: a file cut off once mid-body, a file served corrupt, a gated repo."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".onnx", ".onnx_data", ".bin", ".safetensors")


def _blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _etag(path: str, data: bytes) -> str:
    return hashlib.sha256(data).hexdigest() if path.endswith(LFS_SUFFIXES) else _blob_sha1(data)


class FakeHub:
    """Repositories of files at commits, served on 127.0.0.1 (`url` is its HF_ENDPOINT)."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, Any]] = {}
        self.cut_once: set[str] = set()  # files whose next download stops halfway
        self.corrupt: set[str] = set()  # files served with their bytes flipped (same size)
        self.tokens: dict[str, str] = {}  # gated repositories and the token they need
        self.requests: list[tuple[str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def add(self, repo: str, folder: Path, revision: str = "main", licence: str | None = "apache-2.0") -> str:
        """Publish every file under `folder` as `repo` at `revision`; returns the commit."""
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        commit = hashlib.sha1(json.dumps(sorted((k, _blob_sha1(v)) for k, v in files.items())).encode()).hexdigest()
        entry = self.repos.setdefault(repo, {"revisions": {}, "commits": {}, "card": {}})
        entry["revisions"][revision] = commit
        entry["commits"][commit] = files
        entry["card"] = {"license": licence} if licence else {}
        return commit

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._route(head=False)

            def do_HEAD(self) -> None:
                self._route(head=True)

            def _send(
                self, code: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False
            ) -> None:
                self.send_response(code)
                for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
                    self.send_header(key, value)
                self.end_headers()
                if body and not head:
                    self.wfile.write(body)

            def _error(self, code: int, kind: str, head: bool = False, extra: dict[str, str] | None = None) -> None:
                body = json.dumps({"error": kind}).encode()
                self._send(
                    code, body, {"X-Error-Code": kind, "Content-Type": "application/json", **(extra or {})}, head
                )

            def _repo(self, repo: str, revision: str, head: bool = False) -> tuple[dict[str, Any], str] | None:
                entry = hub.repos.get(repo)
                if entry is None:
                    self._error(404, "RepoNotFound", head)
                    return None
                needed = hub.tokens.get(repo)
                if needed and self.headers.get("Authorization") != f"Bearer {needed}":
                    self._error(403, "GatedRepo", head)
                    return None
                commit = entry["revisions"].get(revision) or (revision if revision in entry["commits"] else None)
                if commit is None:
                    self._error(404, "RevisionNotFound", head)
                    return None
                return entry, commit

            def _route(self, head: bool) -> None:
                parts = urlsplit(self.path)
                path, query = unquote(parts.path), parse_qs(parts.query)
                hub.requests.append((self.command, path))
                if found := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/(.+))?", path):
                    return self._info(found.group(1), found.group(2) or "main", query)
                if found := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(/.*)?", path):
                    return self._tree(found.group(1), found.group(2))
                if found := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
                    return self._file(found.group(1), found.group(2), found.group(3), head)
                self._send(404)

            def _info(self, repo: str, revision: str, query: dict[str, list[str]]) -> None:
                if (found := self._repo(repo, revision)) is None:
                    return
                entry, commit = found
                blobs = query.get("blobs", ["false"])[0].lower() == "true"
                siblings = []
                for name, data in sorted(entry["commits"][commit].items()):
                    sibling: dict[str, Any] = {"rfilename": name}
                    if blobs:
                        sibling |= {"size": len(data), "blobId": _blob_sha1(data)}
                        if name.endswith(LFS_SUFFIXES):
                            sha256 = hashlib.sha256(data).hexdigest()
                            sibling["lfs"] = {"sha256": sha256, "size": len(data), "pointerSize": 134}
                    siblings.append(sibling)
                info = {"id": repo, "modelId": repo, "sha": commit, "private": False, "siblings": siblings}
                info |= {"gated": "manual" if repo in hub.tokens else False, "cardData": entry["card"], "tags": []}
                self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"})

            def _tree(self, repo: str, revision: str) -> None:
                if (found := self._repo(repo, revision)) is None:
                    return
                entry, commit = found
                listed = []
                for name, data in sorted(entry["commits"][commit].items()):
                    item: dict[str, Any] = {"type": "file", "path": name, "size": len(data), "oid": _blob_sha1(data)}
                    if name.endswith(LFS_SUFFIXES):
                        item["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
                    listed.append(item)
                self._send(200, json.dumps(listed).encode(), {"Content-Type": "application/json"})

            def _file(self, repo: str, revision: str, name: str, head: bool) -> None:
                if (found := self._repo(repo, revision, head)) is None:
                    return
                entry, commit = found
                files = entry["commits"][commit]
                if name not in files:
                    return self._error(404, "EntryNotFound", head, {"X-Repo-Commit": commit})
                data = files[name]
                tag = _etag(name, data)
                headers = {"X-Repo-Commit": commit, "ETag": f'"{tag}"', "Accept-Ranges": "bytes"}
                if name.endswith(LFS_SUFFIXES):
                    headers |= {"X-Linked-Etag": f'"{tag}"', "X-Linked-Size": str(len(data))}
                if head:
                    return self._send(200, b"", {**headers, "Content-Length": str(len(data))}, head=True)
                if name in hub.corrupt:
                    data = bytes(b ^ 0xFF for b in data)
                if ranged := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "").strip()):
                    start = int(ranged.group(1))
                    part = data[start:]
                    return self._send(
                        206, part, {**headers, "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
                    )
                if name in hub.cut_once:
                    hub.cut_once.discard(name)
                    self.send_response(200)
                    for key, value in {**headers, "Content-Length": str(len(data))}.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self._send(200, data, headers)

        return Handler


@contextmanager
def fake_hub() -> Iterator[FakeHub]:
    with FakeHub() as hub:
        yield hub
