"""Views of catalog pictures through the frozen front of the network, cached.

The front (stem and frozen blocks) costs more than half of a forward pass and never changes
during tuning, so each picture's views go through it once: view 0 is the clean picture (what
the catalog stores and search embeds), the others shopper views (`tongkuan.adapt.augment`)
seeded by (seed, picture, view), so a resumed run rebuilds the same cache. Stored as float16
on the CPU: Lite0 split after 8 blocks takes 31 kB per view (80 x 14 x 14), 125 MB for 1,000
pictures x 4 views. Where the front is cheap (a GPU) or views must never repeat, pass
`count` None: every request then augments afresh.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image
from tqdm import tqdm

from tongkuan.adapt.augment import P_BACKGROUND, shopper_view
from tongkuan.adapt.network import TunedNet, to_input


class ViewCache:
    """The frozen front's feature maps of each picture's views: view 0 the clean picture,
    the others shopper views seeded by (seed, picture, view), so a resumed run rebuilds the
    same cache. With `count` None nothing is cached: every request augments afresh."""

    def __init__(
        self,
        model: TunedNet,
        loaders: Sequence[Callable[[], Image.Image]],
        count: int | None,
        seed: int,
        backgrounds: Sequence[Image.Image] = (),
        device: torch.device | None = None,
        batch: int = 32,
        progress: bool = False,
        p_background: float = P_BACKGROUND,
    ) -> None:
        self.model, self.loaders, self.count, self.seed, self.batch = model, loaders, count, seed, batch
        self.backgrounds, self.device = backgrounds, device or torch.device("cpu")
        self.p_background = p_background
        self.store: torch.Tensor | None = None
        self.salt = 0  # which draw of shopper views the cache holds (`refresh`)
        if self.count is not None:
            self._fill(progress)

    def _view(self, index: int, view: int, image: Image.Image, salt: int = 0) -> Image.Image:
        if view == 0:
            return image
        rng = np.random.default_rng([self.seed, index, view, salt])
        return shopper_view(image, rng, self.backgrounds, self.p_background)

    def _front(self, images: list[Image.Image]) -> torch.Tensor:
        batch = torch.from_numpy(to_input(images, self.model.input_size)).to(self.device)
        with torch.no_grad():
            return self.model.front(batch)

    def _fill(self, progress: bool, first: int = 0) -> None:
        assert self.count is not None
        pending: list[Image.Image] = []
        chunks: list[torch.Tensor] = []
        total = len(self.loaders) * (self.count - first)
        with tqdm(total=total, desc="caching views", unit="view", disable=not progress) as bar:
            for index, load in enumerate(self.loaders):
                image = load()
                pending += [self._view(index, v, image, self.salt) for v in range(first, self.count)]
                if len(pending) >= self.batch or index == len(self.loaders) - 1:
                    chunks.append(self._front(pending).half().cpu())
                    bar.update(len(pending))
                    pending = []
        stacked = torch.cat(chunks)
        fresh = stacked.reshape(len(self.loaders), self.count - first, *stacked.shape[1:])
        if first and self.store is not None:
            self.store[:, first:] = fresh
        else:
            self.store = fresh

    def refresh(self, salt: int, progress: bool = False) -> None:
        """Draw new shopper views (every view but the clean one) seeded by `salt`: a few cached
        views go stale within a few epochs, a new draw every few epochs keeps them fresh at a
        fraction of uncached augmentation's cost. Same salt, same views (resumable)."""
        if self.count is None or salt == self.salt:
            return
        self.salt = salt
        self._fill(progress, first=1)

    def features(self, indices: Sequence[int], views: Sequence[int], salt: int = 0) -> torch.Tensor:
        """Front feature maps for (picture, view) pairs, float32 on the training device."""
        if self.store is not None:
            return self.store[list(indices), list(views)].to(self.device, torch.float32)
        images = [self._view(i, v, self.loaders[i](), salt) for i, v in zip(indices, views, strict=True)]
        return self._front(images)

    def fixed_views(self, indices: Sequence[int], salt: int, view: int = 1) -> torch.Tensor:
        """Front feature maps (float16, CPU) of one shopper view of each picture seeded by
        `salt` (or with `view` 0, the clean pictures), outside the cache: queries that stay
        the same from epoch to epoch."""
        chunks = []
        for start in range(0, len(indices), self.batch):
            chunk = indices[start : start + self.batch]
            images = [self._view(i, view, self.loaders[i](), salt) for i in chunk]
            chunks.append(self._front(images).half().cpu())
        return torch.cat(chunks) if chunks else torch.zeros(0)

    def embed_features(self, features: torch.Tensor) -> NDArray[np.float32]:
        """L2-normalised embeddings of front feature maps, with the model as it is now."""
        out = []
        with torch.no_grad():
            for start in range(0, len(features), self.batch):
                chunk = features[start : start + self.batch].to(self.device, torch.float32)
                embedding, _ = self.model.embed_features(self.model.back(chunk))
                out.append(torch.nn.functional.normalize(embedding, dim=1).cpu().numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.model.dim), np.float32)

    def embed(self, indices: Sequence[int], view: int = 0) -> NDArray[np.float32]:
        """L2-normalised embeddings of one view of each picture, with the model as it is now."""
        out = []
        with torch.no_grad():
            for start in range(0, len(indices), self.batch):
                chunk = list(indices[start : start + self.batch])
                embedding, _ = self.model.embed_features(self.model.back(self.features(chunk, [view] * len(chunk))))
                out.append(torch.nn.functional.normalize(embedding, dim=1).cpu().numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.model.dim), np.float32)
