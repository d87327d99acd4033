"""Category prediction: the classifier's prior over the 14 categories, and the neighbour vote.

Category scores come from two sources, fused as Pailitao does: the model's classifier, and a
similarity-weighted vote over the nearest catalog images, whose categories the operator
knows. The shipped models' classifier is ImageNet's (each of its 1000 classes mapped by hand
onto one API category, everything unmapped is "other"); a model tuned on a catalog whose
records carry categories has a category head trained on them, whose logits are the 14
categories themselves (`CATEGORY_HEAD`). With an empty catalog only the prior speaks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from numpy.typing import NDArray

from tongkuan.domain.categories import CATEGORIES, CATEGORY_POSITION, Category, CategoryScore

IMAGENET = "imagenet-1k"  # model.json "labels": ImageNet's 1000 classes
CATEGORY_HEAD = "tongkuan-categories"  # model.json "labels": one logit per API category, in CATEGORIES' order

# ImageNet-1k class indices per category (hand-made from the class names); the rest is OTHER.
_IMAGENET: dict[Category, tuple[int, ...]] = {
    Category.TOPS: (474, 501, 568, 610, 617, 638, 735, 834, 841, 869, 887),
    Category.DRESSES: (399, 400, 578, 601, 614),
    Category.BOTTOMS: (608, 655, 689, 842),
    Category.BAGS: (414, 636, 728, 748, 893),
    Category.SHOES: (502, 514, 630, 770, 774),
    Category.ACCESSORIES: (
        433,
        439,
        451,
        452,
        457,
        464,
        488,
        515,
        584,
        658,
        667,
        679,
        793,
        808,
        824,
        836,
        837,
        879,
        903,
        906,
    ),
    Category.SNACKS: (509, 927, 928, 929, 930, 931, 932, 933, 934, 935, 960),
    Category.BEAUTY: (551, 585, 629, 631, 711, 838),
    Category.BOTTLED_BEVERAGES: (440, 653, 720, 737, 898, 899, 901, 907),
    Category.FURNITURE: (
        423,
        453,
        492,
        516,
        520,
        526,
        532,
        548,
        553,
        559,
        564,
        619,
        648,
        765,
        831,
        846,
        857,
        894,
    ),
    Category.TOYS: (417, 429, 430, 522, 574, 611, 722, 747, 768, 805, 850, 852, 865, 890),
    Category.UNDERWEAR: (445, 459, 529, 639, 697, 806),
    Category.DIGITAL: (
        482,
        487,
        508,
        527,
        528,
        531,
        590,
        605,
        613,
        620,
        622,
        632,
        650,
        664,
        673,
        681,
        732,
        742,
        745,
        754,
        759,
        761,
        782,
        810,
        848,
        851,
        878,
    ),
}


def imagenet_projection() -> NDArray[np.float32]:
    """A (1000, 14) 0/1 matrix that sums ImageNet class probabilities into categories."""
    proj = np.zeros((1000, len(CATEGORIES)), dtype=np.float32)
    proj[:, CATEGORY_POSITION[Category.OTHER]] = 1.0
    for cat, indices in _IMAGENET.items():
        for i in indices:
            proj[i, :] = 0.0
            proj[i, CATEGORY_POSITION[cat]] = 1.0
    return proj


def label_projection(labels: str | None) -> NDArray[np.float32] | None:
    """The matrix that sums a classifier's class probabilities into the 14 categories, for
    the labels a model.json names; None for a model without a known classifier."""
    if labels == IMAGENET:
        return imagenet_projection()
    if labels == CATEGORY_HEAD:
        return np.eye(len(CATEGORIES), dtype=np.float32)
    return None


# What each category shows, as a model with a text tower is asked (CLIP's zero-shot prompts,
# several per category, their embeddings averaged: prompt ensembling, Radford et al. 2021).
CATEGORY_PROMPTS: dict[Category, tuple[str, ...]] = {
    Category.TOPS: ("a shirt", "a t-shirt", "a jacket", "a sweater", "a coat"),
    Category.DRESSES: ("a dress", "a skirt dress"),
    Category.BOTTOMS: ("trousers", "jeans", "shorts", "a skirt"),
    Category.BAGS: ("a handbag", "a backpack", "a suitcase", "a wallet"),
    Category.SHOES: ("shoes", "sneakers", "boots", "sandals", "high heels"),
    Category.ACCESSORIES: ("jewellery", "a watch", "a hat", "sunglasses", "a belt", "a scarf"),
    Category.SNACKS: ("snacks", "packaged food", "fruit", "vegetables", "a box of biscuits"),
    Category.BEAUTY: ("a cosmetic product", "a skin care bottle", "a lipstick", "perfume"),
    Category.BOTTLED_BEVERAGES: ("a bottled drink", "a carton of milk", "a bottle of juice", "a can of soda"),
    Category.FURNITURE: ("furniture", "a chair", "a table", "a sofa", "a bed"),
    Category.TOYS: ("a toy", "a doll", "a plush toy", "a toy car", "building blocks"),
    Category.UNDERWEAR: ("underwear", "a bra", "socks", "pyjamas"),
    Category.DIGITAL: ("a mobile phone", "a laptop", "headphones", "a camera", "an electronic device"),
    Category.OTHER: ("a household item", "a tool", "a product"),
}
PROMPT_TEMPLATES = ("a photo of {}.", "a product photo of {}.")
ZERO_SHOT_SCALE = 100.0  # CLIP's learnt logit scale


def category_prompts() -> list[tuple[Category, str]]:
    """Every (category, prompt) a text tower embeds for zero-shot categories."""
    return [(c, t.format(p)) for c, prompts in CATEGORY_PROMPTS.items() for p in prompts for t in PROMPT_TEMPLATES]


def zero_shot_prior(
    embeddings: NDArray[np.float32], categories: NDArray[np.float32], scale: float = ZERO_SHOT_SCALE
) -> NDArray[np.float32]:
    """Category probabilities from pictures' embeddings and each category's (normalised)
    prompt embedding, in CATEGORIES' order: a softmax over scaled cosines."""
    return softmax((scale * embeddings @ categories.T).astype(np.float32))


def softmax(logits: NDArray[np.float32]) -> NDArray[np.float32]:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    out: NDArray[np.float32] = (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
    return out


def neighbour_vote(
    neighbours: Iterable[tuple[Category, float]], temperature: float = 0.05
) -> NDArray[np.float32] | None:
    """Category distribution from (category, cosine similarity) of the nearest catalog images.

    Weights are `exp(sim / temperature)`, so close neighbours dominate; None when there are
    no neighbours at all.
    """
    votes = np.zeros(len(CATEGORIES), dtype=np.float64)
    pairs = list(neighbours)
    if not pairs:
        return None
    top = max(sim for _, sim in pairs)
    for cat, sim in pairs:
        votes[CATEGORY_POSITION[cat]] += np.exp((sim - top) / temperature)
    out: NDArray[np.float32] = (votes / votes.sum()).astype(np.float32)
    return out


def fuse(prior: NDArray[np.float32], vote: NDArray[np.float32] | None, prior_weight: float) -> NDArray[np.float32]:
    """Blend the classifier prior with the neighbour vote (prior only when there is no vote)."""
    if vote is None:
        return prior
    return (prior_weight * prior + (1.0 - prior_weight) * vote).astype(np.float32)


def ranked(scores: Sequence[float] | NDArray[np.float32], top: int) -> list[CategoryScore]:
    """The `top` categories by score, best first."""
    order = np.argsort(-np.asarray(scores), kind="stable")[:top]
    return [CategoryScore(CATEGORIES[i], float(scores[i])) for i in order]
