"""Reading the data sets' CSV label files (shared with the benchmarks: `tongkuan.bench`)."""

from __future__ import annotations

from tongkuan.bench import read_rows

__all__ = ["read_rows"]
