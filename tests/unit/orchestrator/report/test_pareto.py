"""Pareto fronts: who no one beats on both figures."""

from __future__ import annotations

from orchestrator.report.pareto import Point, dominates, pareto_front


def front(*points: tuple[str, float | None, float | None]) -> set[str]:
    """J/token (lower is better) against tokens/s (higher is better)."""
    return pareto_front([Point(*p) for p in points], "lower", "higher")


def test_a_single_point_is_its_own_front():
    assert front(("a", 1.0, 10.0)) == {"a"}


def test_a_trade_off_keeps_both_and_drops_the_dominated():
    # b is cheaper and slower than a; c is worse than a on both
    assert front(("a", 1.0, 10.0), ("b", 0.5, 5.0), ("c", 2.0, 8.0)) == {"a", "b"}


def test_one_point_that_beats_all_others_is_the_whole_front():
    assert front(("best", 0.1, 100.0), ("x", 0.2, 90.0), ("y", 0.3, 50.0),
                 ("z", 0.2, 100.0)) == {"best"}


def test_equal_points_are_both_on_the_front():
    assert front(("a", 1.0, 10.0), ("b", 1.0, 10.0), ("c", 1.5, 10.0)) == {"a", "b"}


def test_a_tie_on_one_axis_is_decided_by_the_other():
    assert front(("a", 1.0, 10.0), ("b", 1.0, 12.0)) == {"b"}


def test_points_without_a_figure_are_on_no_front_and_dominate_nothing():
    assert front(("a", None, 10.0), ("b", 2.0, 5.0), ("c", 1.0, None)) == {"b"}
    assert front(("a", None, None)) == set()


def test_direction_of_each_axis_is_respected():
    # against p90 latency both axes are lower-is-better
    points = [Point("fast", 1.0, 0.1), Point("slow", 0.9, 0.5), Point("bad", 1.2, 0.6)]
    assert pareto_front(points, "lower", "lower") == {"fast", "slow"}
    assert dominates(points[0], points[2], "lower", "lower")
    assert not dominates(points[2], points[0], "lower", "lower")
