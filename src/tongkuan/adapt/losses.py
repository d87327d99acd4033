"""The metric-learning objective and the recall it is checked by."""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray

from tongkuan.adapt.groups import Labels


def cosface_loss(
    embeddings: torch.Tensor,
    proxies: torch.Tensor,
    labels: torch.Tensor,
    scale: float,
    margin: float,
    ignored: torch.Tensor | None = None,
    silent: torch.Tensor | None = None,
) -> torch.Tensor:
    """Normalized softmax over cosine similarities to the proxies, `margin` taken off the true
    proxy's cosine (CosFace, Wang et al. 2018). `ignored` (groups × k, -1 padded) lists, per
    group, proxies left out of its softmax: likely the same product, never pushed away.
    `silent` (one bool per proxy) marks proxies left out of every softmax."""
    cosine = torch.nn.functional.normalize(embeddings, dim=1) @ torch.nn.functional.normalize(proxies, dim=1).T
    logits = scale * (cosine - margin * torch.nn.functional.one_hot(labels, proxies.shape[0]))
    if silent is not None:
        logits = logits.masked_fill(silent[None, :], float("-inf"))
    if ignored is not None and ignored.shape[1]:
        rows = ignored[labels]
        mask = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, rows.clamp(min=0), rows >= 0)
        logits = logits.masked_fill(mask, float("-inf"))
    return torch.nn.functional.cross_entropy(logits, labels)


def likely_twins(means: NDArray[np.float32], open_groups: NDArray[np.bool_], k: int, threshold: float) -> torch.Tensor:
    """Per group, up to `k` other groups whose mean embedding is at cosine `threshold` or more,
    where both groups are open (made of single-picture listings the catalog does not tie to
    anything): pseudo-groups miss most twins, and a softmax over every group would push a
    listing away from its unrecognised twins (instance discrimination). (groups × k), -1 padded."""
    unit = means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    out = np.full((len(means), k), -1, dtype=np.int64)
    candidates = np.flatnonzero(open_groups)
    if k == 0 or len(candidates) < 2:
        return torch.from_numpy(out)
    pool = unit[candidates]
    for start in range(0, len(candidates), 1024):
        sims = pool[start : start + 1024] @ pool.T
        rows = np.arange(len(sims))
        sims[rows, rows + start] = -np.inf  # not itself
        top = np.argsort(-sims, axis=1)[:, : min(k, len(candidates) - 1)]
        keep = np.take_along_axis(sims, top, axis=1) >= threshold
        out[candidates[start : start + len(sims)], : top.shape[1]] = np.where(keep, candidates[top], -1)
    return torch.from_numpy(out)


def recall_at_1(
    gallery: NDArray[np.float32],
    labels: Labels,
    queries: NDArray[np.float32],
    query_labels: Labels,
    left_out: NDArray[np.int64] | None = None,
) -> float:
    """Recall@1 of `queries` against `gallery`; query i never matches gallery row
    `left_out[i]` (itself, when the queries are gallery rows)."""
    if not len(queries):
        return 0.0
    sims = queries @ gallery.T
    if left_out is not None:
        sims[np.arange(len(queries)), left_out] = -np.inf
    return float(np.mean(labels[np.argmax(sims, axis=1)] == query_labels))
