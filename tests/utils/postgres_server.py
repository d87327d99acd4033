"""A throwaway PostgreSQL cluster on 127.0.0.1 (shared with the benchmarks: `tongkuan.bench`)."""

from __future__ import annotations

from tongkuan.bench import PostgresServer
from tongkuan.bench import postgres_available as available

__all__ = ["PostgresServer", "available"]
