"""The `tongkuan` command: thin wrappers over the engine and the model workflows, one module
per kind of command (`common`: the group and `serve`; `catalog`; `models`: whiten, tune,
quantize; `library`: `tongkuan models`; `evaluate`: `tongkuan eval`)."""

from tongkuan.cli import catalog, evaluate, library, models  # noqa: F401  (each module registers its commands)
from tongkuan.cli.common import main

__all__ = ["main"]
