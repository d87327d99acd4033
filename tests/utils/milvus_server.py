"""A throwaway Milvus standalone server on loopback (shared with the benchmarks: `tongkuan.bench`)."""

from __future__ import annotations

from tongkuan.bench import MilvusServer
from tongkuan.bench.milvus_host import namespace_interfaces, process_alive

__all__ = ["MilvusServer", "namespace_interfaces", "process_alive"]
