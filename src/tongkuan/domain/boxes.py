"""Pixel boxes: subject regions, the `region` parameter, a picture inside a picture."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Box:
    """A pixel box, x-max and y-max exclusive."""

    x1: int
    x2: int
    y1: int
    y2: int

    @property
    def area(self) -> int:
        return max(0, self.x2 - self.x1) * max(0, self.y2 - self.y1)

    def iou(self, other: Box) -> float:
        ix = max(0, min(self.x2, other.x2) - max(self.x1, other.x1))
        iy = max(0, min(self.y2, other.y2) - max(self.y1, other.y1))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union else 0.0

    def clipped(self, width: int, height: int) -> Box:
        """The part of the box inside a `width`×`height` picture."""
        return Box(min(self.x1, width), min(self.x2, width), min(self.y1, height), min(self.y2, height))

    def to_param(self) -> str:
        """The API's `x1,x2,y1,y2` spelling."""
        return f"{self.x1},{self.x2},{self.y1},{self.y2}"
