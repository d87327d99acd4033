"""What a check set's searches score: recall at 1, 5 and 20, MRR, category top-1."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

DEPTH = 20  # results looked at per query: R@20, and MRR counts a rank past it as a miss


@dataclass(frozen=True)
class Outcome:
    """One check's search: where its first right product ranked (None: not in the first
    `DEPTH`), what came first, and whether the predicted category was right (None: the
    check names no category)."""

    line: int
    rank: int | None
    first: str | None
    category_right: bool | None = None
    failed: str = ""  # why the check could not run (an unreadable picture): it is not scored

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Outcome:
        return cls(**data)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Scores:
    """A check set's figures; `category_top1` over the `category_n` checks that name one."""

    recall_1: float
    recall_5: float
    recall_20: float
    mrr: float
    n: int
    category_top1: float | None
    category_n: int
    failed: int

    def to_json(self) -> dict[str, object]:
        """The keys `tongkuan eval --json` prints."""
        shown: dict[str, object] = {
            "R@1": round(self.recall_1, 4),
            "R@5": round(self.recall_5, 4),
            "R@20": round(self.recall_20, 4),
            "MRR": round(self.mrr, 4),
            "n": self.n,
        }
        if self.category_top1 is not None:
            shown |= {"category@1": round(self.category_top1, 4), "categoryN": self.category_n}
        if self.failed:
            shown["failed"] = self.failed
        return shown


def score(outcomes: Sequence[Outcome]) -> Scores:
    """The figures of the checks that ran (failed ones are counted apart)."""
    ran = [o for o in outcomes if not o.failed]
    n = len(ran)

    def recall(k: int) -> float:
        return sum(1 for o in ran if o.rank is not None and o.rank <= k) / n if n else 0.0

    mrr = sum(1.0 / o.rank for o in ran if o.rank is not None) / n if n else 0.0
    named = [o.category_right for o in ran if o.category_right is not None]
    top1 = sum(named) / len(named) if named else None
    return Scores(recall(1), recall(5), recall(DEPTH), mrr, n, top1, len(named), len(outcomes) - n)
