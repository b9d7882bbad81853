from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from harness.backends.base import Request
from harness.load.arrivals import (
    arrival_offsets,
    draw_lengths,
    length_bounds,
    request_count,
    schedule,
)
from harness.schema.config import ExperimentConfig

GAPS = 100_000


def serving(n: int = 20, random_seed: int = 42, **load: Any) -> ExperimentConfig:
    return ExperimentConfig(model="m", backend="vllm", n=n, random_seed=random_seed,
                            load={"mode": "serving", "request_rate": 4.0, **load})


def gaps(process: Any, rate: float, burstiness: float | None = None,
         seed: int = 0) -> np.ndarray:
    offsets = arrival_offsets(process, rate, burstiness=burstiness, count=GAPS + 1, seed=seed)
    return np.diff(offsets)


# -- the processes ----------------------------------------------------------------------------


@pytest.mark.parametrize("process", ["poisson", "gamma", "constant"])
def test_the_first_arrival_is_at_zero_and_offsets_never_go_back(process: Any) -> None:
    offsets = arrival_offsets(process, 5.0, count=500, seed=1)

    assert len(offsets) == 500
    assert offsets[0] == 0.0
    assert all(later >= earlier for earlier, later in zip(offsets, offsets[1:], strict=False))


@pytest.mark.parametrize("process", ["poisson", "gamma"])
def test_arrivals_are_seeded(process: Any) -> None:
    first = arrival_offsets(process, 3.0, count=50, seed=7)

    assert arrival_offsets(process, 3.0, count=50, seed=7) == first
    assert arrival_offsets(process, 3.0, count=50, seed=8) != first


@pytest.mark.parametrize("rate", [0.5, 10.0, 1000.0])
def test_poisson_gaps_are_exponential_with_mean_one_over_the_rate(rate: float) -> None:
    drawn = gaps("poisson", rate)

    assert drawn.mean() == pytest.approx(1 / rate, rel=0.01)
    assert drawn.std() / drawn.mean() == pytest.approx(1.0, rel=0.02)  # exponential: CV 1


@pytest.mark.parametrize("shape", [0.25, 1.0, 4.0])
def test_gamma_gaps_keep_the_mean_rate_and_have_cv_one_over_root_shape(shape: float) -> None:
    drawn = gaps("gamma", 8.0, burstiness=shape)

    assert drawn.mean() == pytest.approx(1 / 8.0, rel=0.01)
    assert drawn.std() / drawn.mean() == pytest.approx(1 / math.sqrt(shape), rel=0.02)


def test_gamma_without_burstiness_is_poisson_in_distribution() -> None:
    drawn = gaps("gamma", 2.0)

    assert drawn.mean() == pytest.approx(0.5, rel=0.01)
    assert drawn.std() / drawn.mean() == pytest.approx(1.0, rel=0.02)


def test_constant_arrivals_are_exactly_i_over_the_rate() -> None:
    offsets = arrival_offsets("constant", 3.0, count=10_000, seed=5)

    assert offsets == [index / 3.0 for index in range(10_000)]
    assert arrival_offsets("constant", 3.0, count=10_000, seed=6) == offsets


# -- duration mode --------------------------------------------------------------------------


@pytest.mark.parametrize("process", ["poisson", "gamma", "constant"])
def test_a_duration_takes_every_arrival_before_it_and_no_other(process: Any) -> None:
    within = arrival_offsets(process, 50.0, duration_s=20.0, seed=3)
    longer = arrival_offsets(process, 50.0, count=len(within) + 1, seed=3)

    assert within == longer[:-1]  # the same stream as a count
    assert within[-1] < 20.0 <= longer[-1]
    assert len(within) == pytest.approx(1000, rel=0.1)


def test_a_constant_duration_counts_exactly() -> None:
    assert len(arrival_offsets("constant", 4.0, duration_s=10.0, seed=0)) == 40
    assert len(arrival_offsets("constant", 4.0, duration_s=10.01, seed=0)) == 41


def test_a_duration_shorter_than_the_first_gap_still_has_the_first_arrival() -> None:
    assert arrival_offsets("poisson", 0.001, duration_s=0.01, seed=0) == [0.0]


def test_a_duration_far_beyond_its_expected_count_draws_more() -> None:
    # At rate 1 over 5 s a few draws are expected; a bursty seed may need many more.
    for seed in range(50):
        within = arrival_offsets("gamma", 1.0, burstiness=0.05, duration_s=5.0, seed=seed)
        assert within[-1] < 5.0
        assert arrival_offsets("gamma", 1.0, burstiness=0.05, count=len(within) + 1,
                               seed=seed)[-1] >= 5.0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"count": 3, "duration_s": 1.0}, "exactly one of count"),
    ({}, "exactly one of count"),
    ({"count": 0}, "at least 1"),
    ({"duration_s": 0.0}, "duration_s must be a positive"),
    ({"duration_s": math.inf}, "duration_s must be a positive"),
])
def test_a_bad_count_or_duration_is_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        arrival_offsets("poisson", 1.0, seed=0, **kwargs)


@pytest.mark.parametrize(("process", "rate", "burstiness", "message"), [
    ("poisson", 0.0, None, "positive number of requests/s"),
    ("poisson", math.nan, None, "positive number of requests/s"),
    ("poisson", 1.0, 2.0, "burstiness applies to gamma"),
    ("gamma", 1.0, 0.0, "must be positive"),
    ("uniform", 1.0, None, "unknown arrival process"),
])
def test_a_bad_process_is_refused(process: Any, rate: float, burstiness: float | None,
                                  message: str) -> None:
    with pytest.raises(ValueError, match=message):
        arrival_offsets(process, rate, burstiness=burstiness, count=2, seed=0)


def test_a_negative_seed_draws_as_its_absolute_value() -> None:
    assert (arrival_offsets("poisson", 1.0, count=5, seed=-9)
            == arrival_offsets("poisson", 1.0, count=5, seed=9))


# -- lengths ----------------------------------------------------------------------------------


def test_length_bounds_round_each_end_and_keep_at_least_one_token() -> None:
    assert length_bounds(100, 0.5) == (50, 150)
    assert length_bounds(5, 0.5) == (2, 8)  # 2.5 and 7.5: Python's round, to even
    assert length_bounds(1, 0.9) == (1, 2)
    with pytest.raises(ValueError, match="at least 1 token"):
        length_bounds(0, 0.5)
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        length_bounds(10, 1.0)


def test_drawn_lengths_cover_their_range_uniformly() -> None:
    lengths = draw_lengths(10, 0.3, 70_000, seed=1, stream="input")

    values, counts = np.unique(lengths, return_counts=True)
    assert values.tolist() == list(range(7, 14))  # both ends included
    assert counts / len(lengths) == pytest.approx([1 / 7] * 7, abs=0.01)


def test_drawn_lengths_are_seeded_and_input_and_output_streams_differ() -> None:
    first = draw_lengths(100, 0.5, 200, seed=4, stream="input")

    assert draw_lengths(100, 0.5, 200, seed=4, stream="input") == first
    assert draw_lengths(100, 0.5, 200, seed=5, stream="input") != first
    assert draw_lengths(100, 0.5, 200, seed=4, stream="output") != first
    # A longer draw extends a shorter one: n does not reshuffle the lengths.
    assert draw_lengths(100, 0.5, 300, seed=4, stream="input")[:200] == first


# -- the configuration ------------------------------------------------------------------------


def requests(count: int) -> list[Request]:
    return [Request(index, [index + 1], 4) for index in range(count)]


def test_schedule_pairs_requests_in_order_with_the_random_seed_arrivals() -> None:
    config = serving(n=20, random_seed=11, arrival="gamma", burstiness=0.5)

    arrivals = schedule(config, requests(20))

    assert [arrival.request.request_id for arrival in arrivals] == list(range(20))
    assert [arrival.offset_s for arrival in arrivals] == arrival_offsets(
        "gamma", 4.0, burstiness=0.5, count=20, seed=11)


def test_load_seed_overrides_the_random_seed() -> None:
    default = [a.offset_s for a in schedule(serving(random_seed=11), requests(20))]
    own = [a.offset_s for a in schedule(serving(random_seed=11, seed=3), requests(20))]

    assert own == arrival_offsets("poisson", 4.0, count=20, seed=3)
    assert own != default


def test_request_count_is_n_or_the_arrivals_within_the_duration() -> None:
    assert request_count(serving(n=20)) == 20
    timed = serving(n=20, duration_s=30.0)
    count = request_count(timed)

    assert count == len(arrival_offsets("poisson", 4.0, duration_s=30.0, seed=42))
    assert [a.offset_s for a in schedule(timed, requests(count))][-1] < 30.0


def test_schedule_refuses_a_request_count_the_load_does_not_send() -> None:
    with pytest.raises(ValueError, match=r"build request_count\(config\) requests"):
        schedule(serving(n=20, duration_s=30.0), requests(20))


def test_an_offline_load_has_no_arrivals() -> None:
    offline = ExperimentConfig(model="m", backend="vllm", n=5)

    assert request_count(offline) == 5
    with pytest.raises(ValueError, match="load.mode serving"):
        schedule(offline, requests(5))
