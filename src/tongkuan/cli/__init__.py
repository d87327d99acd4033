"""The `tongkuan` command: thin wrappers over the engine and the model workflows, one module
per kind of command (`common`: the group and `serve`; `catalog`; `models`)."""

from tongkuan.cli import catalog, models  # noqa: F401  (each module registers its commands)
from tongkuan.cli.common import main

__all__ = ["main"]
