"""A loopback-only HTTP server for picUrl tests (shared with the benchmarks: `tongkuan.bench`)."""

from __future__ import annotations

from tongkuan.bench import FileServer

__all__ = ["FileServer"]
