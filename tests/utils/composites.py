"""Scenes with a known subject box (shared with the benchmarks: `tongkuan.bench`)."""

from __future__ import annotations

from tongkuan.bench import Composite, composites

__all__ = ["Composite", "composites"]
