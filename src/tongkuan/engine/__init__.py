"""The composition root: settings in, the parts built and wired, the operations the HTTP
routes and the command line share. The only layer that reads `Settings` besides the edges."""

from tongkuan.engine.engine import Engine

__all__ = ["Engine"]
