"""Pareto fronts: the configurations no other one beats on both of two figures.

A point is on the front when no other point is at least as good on both axes and strictly
better on one. Equal points do not dominate each other, so ties are all on the front; a point
with a missing figure is on no front (it cannot be compared) and is reported as such.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Better = Literal["lower", "higher"]


@dataclass(frozen=True)
class Point:
    """One configuration's two figures.

    Attributes:
        key: what the point stands for (a configuration key).
        x: its figure on the first axis; None when not measured.
        y: its figure on the second axis; None when not measured.
    """

    key: str
    x: float | None
    y: float | None


def dominates(a: Point, b: Point, x_better: Better, y_better: Better) -> bool:
    """Whether ``a`` is at least as good as ``b`` on both axes and better on one."""
    if a.x is None or a.y is None or b.x is None or b.y is None:
        return False
    ax, bx = (a.x, b.x) if x_better == "higher" else (-a.x, -b.x)
    ay, by = (a.y, b.y) if y_better == "higher" else (-a.y, -b.y)
    return ax >= bx and ay >= by and (ax > bx or ay > by)


def pareto_front(points: Sequence[Point], x_better: Better, y_better: Better) -> set[str]:
    """Keys of the points on the front (O(n^2): a study has tens of configurations)."""
    return {point.key for point in points
            if point.x is not None and point.y is not None
            and not any(dominates(other, point, x_better, y_better) for other in points)}
