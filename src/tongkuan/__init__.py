"""tongkuan: self-hosted product image search, wire-compatible with Taobao Image Search V2.0."""

__version__ = "0.1.0"
__all__ = ["__version__"]
