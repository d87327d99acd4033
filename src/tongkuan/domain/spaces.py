"""Search spaces: how the catalog's stored vectors and each query are mapped before the vector
index sees them (the model's own space, or a learned whitening)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

Matrix = NDArray[np.float32]


class SearchSpace(Protocol):
    """How stored vectors and queries are mapped before the vector index sees them."""

    @property
    def dim(self) -> int:
        """Dimension of the mapped vectors."""
        ...

    @property
    def key(self) -> str:
        """Names the space in index folder and collection names ("" for the model's own)."""
        ...

    def __call__(self, vectors: Matrix) -> Matrix: ...


@dataclass(frozen=True)
class ModelSpace:
    """The model's own embeddings, unchanged."""

    dim: int
    key: str = ""

    def __call__(self, vectors: Matrix) -> Matrix:
        return vectors
