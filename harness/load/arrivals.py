"""When each request arrives, and how long a synthetic request is when lengths are drawn.

Arrival times are offsets from the load's start: the first request arrives at 0.0 and each
later one a gap after the previous one. The gaps are drawn with numpy's ``default_rng`` from
``load.seed`` (default ``random_seed``), so a configuration always yields the same arrivals:

- ``poisson``: exponential gaps of mean ``1 / rate``;
- ``gamma``: gamma gaps of shape ``burstiness`` and scale ``1 / (rate * burstiness)``, so the
  mean gap is still ``1 / rate`` and the gaps' coefficient of variation is
  ``1 / sqrt(burstiness)`` (shape 1 is Poisson; below 1 burstier, above 1 more regular);
- ``constant``: every gap ``1 / rate`` (offset ``i / rate`` exactly).

A load of ``count`` requests takes the first ``count`` arrivals; a load of ``duration_s``
seconds takes every arrival before ``duration_s`` (at least the first). Both read one stream
of gaps, so the arrivals of a duration are the first arrivals of a count with the same seed.

``load.lengths: uniform`` draws each synthetic request's prompt and output lengths with
:func:`draw_lengths`, from two streams of the same seed that are independent of each other and
of the arrivals (``harness.datasets`` draws each prompt at its drawn length).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import numpy.typing as npt

from harness.backends.base import Request
from harness.load import Arrival
from harness.schema.config import ExperimentConfig

Process = Literal["poisson", "gamma", "constant"]
"""An arrival process (``load.arrival``)."""

LengthStream = Literal["input", "output"]
"""Which length :func:`draw_lengths` draws: each has its own random stream."""

_STREAM_KEYS: dict[LengthStream, int] = {"input": 1, "output": 2}
"""Spawn keys of the length streams (the arrivals use the seed's root stream)."""

_DURATION_MARGIN = 1.2
"""Duration mode first draws this many times the expected arrivals (then doubles)."""


def arrival_offsets(
    process: Process,
    rate: float,
    *,
    burstiness: float | None = None,
    count: int | None = None,
    duration_s: float | None = None,
    seed: int,
) -> list[float]:
    """Arrival offsets (s after the load's start) of ``count`` requests or of ``duration_s``.

    Args:
        process: the arrival process: ``poisson``, ``gamma`` or ``constant``.
        rate: mean arrivals per second (> 0).
        burstiness: ``gamma`` only, the gaps' shape (> 0; default 1, which is Poisson).
        count: how many arrivals (>= 1); exactly one of ``count`` and ``duration_s``.
        duration_s: take every arrival with an offset below this (> 0).
        seed: the random seed (a negative seed draws as its absolute value, as Python's
            ``random.seed`` does).

    Returns:
        Non-decreasing offsets, the first 0.0.

    Raises:
        ValueError: a rate, count, duration or burstiness out of range, both or neither of
            ``count`` and ``duration_s``, or a burstiness for another process than gamma.

    """
    _check_process(process, rate, burstiness)
    if count is not None and duration_s is None:
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        offsets: list[float] = _first_offsets(process, rate, burstiness, count, seed).tolist()
        return offsets
    if duration_s is not None and count is None:
        if not 0 < duration_s < math.inf:
            raise ValueError(f"duration_s must be a positive number of seconds, got "
                             f"{duration_s}")
        within: list[float] = _offsets_before(process, rate, burstiness, duration_s, seed).tolist()
        return within
    raise ValueError("give exactly one of count (how many arrivals) and duration_s (how long "
                     "they go on)")


def _check_process(process: Process, rate: float, burstiness: float | None) -> None:
    if process not in ("poisson", "gamma", "constant"):
        raise ValueError(f"unknown arrival process {process!r}: use poisson, gamma or constant")
    if not rate > 0 or math.isinf(rate):
        raise ValueError(f"the arrival rate must be a positive number of requests/s, got {rate}")
    if burstiness is not None and process != "gamma":
        raise ValueError(f"burstiness applies to gamma arrivals, not {process}; remove it")
    if burstiness is not None and not burstiness > 0:
        raise ValueError(f"burstiness (the gamma shape) must be positive, got {burstiness}")


def _first_offsets(
    process: Process, rate: float, burstiness: float | None, count: int, seed: int
) -> npt.NDArray[np.float64]:
    """The first ``count`` offsets of the seed's stream."""
    if process == "constant":
        return np.arange(count) / rate  # i / rate, without a running sum's rounding
    rng = np.random.default_rng(abs(seed))
    if process == "poisson":
        gaps = rng.exponential(1 / rate, count - 1)
    else:
        shape = 1.0 if burstiness is None else burstiness
        gaps = rng.gamma(shape, 1 / (rate * shape), count - 1)
    # numpy draws element by element from one stream, so a longer draw extends a shorter one.
    return np.concatenate(([0.0], np.cumsum(gaps)))


def _offsets_before(
    process: Process, rate: float, burstiness: float | None, duration_s: float, seed: int
) -> npt.NDArray[np.float64]:
    """Every offset below ``duration_s``: draw enough arrivals, more if they fall short."""
    count = max(2, math.ceil(rate * duration_s * _DURATION_MARGIN) + 10)
    while True:
        offsets = _first_offsets(process, rate, burstiness, count, seed)
        if offsets[-1] >= duration_s:
            return offsets[offsets < duration_s]
        count *= 2


def length_bounds(base: int, ratio: float) -> tuple[int, int]:
    """The lengths ``load.lengths: uniform`` may draw around ``base``: both ends included.

    ``[round(base * (1 - ratio)), round(base * (1 + ratio))]``, the low end at least 1. An
    engine sized for the workload must accept the high end (Python's ``round``: halves go to
    the even neighbour).
    """
    if base < 1:
        raise ValueError(f"a length must be at least 1 token, got {base}")
    if not 0 <= ratio < 1:
        raise ValueError(f"the length range ratio must be in [0, 1), got {ratio}")
    return max(1, round(base * (1 - ratio))), round(base * (1 + ratio))


def draw_lengths(
    base: int, ratio: float, count: int, seed: int, stream: LengthStream
) -> list[int]:
    """``count`` lengths drawn uniformly from :func:`length_bounds` (``base``, ``ratio``).

    Args:
        base: the configured length (``input_len`` or ``output_len``).
        ratio: ``load.length_range_ratio``.
        count: how many lengths.
        seed: the load's seed (negative: its absolute value).
        stream: ``input`` or ``output``: each has its own stream of the seed, so drawing one
            never changes the other, nor the arrivals.

    Raises:
        ValueError: ``base`` below 1, ``ratio`` outside [0, 1) or ``count`` negative.

    """
    if count < 0:
        raise ValueError(f"count must not be negative, got {count}")
    low, high = length_bounds(base, ratio)
    sequence = np.random.SeedSequence(abs(seed), spawn_key=(_STREAM_KEYS[stream],))
    lengths = np.random.default_rng(sequence).integers(low, high, size=count, endpoint=True)
    return [int(length) for length in lengths]


def load_seed(config: ExperimentConfig) -> int:
    """The seed of the arrivals and drawn lengths: ``load.seed``, else ``random_seed``."""
    return config.random_seed if config.load.seed is None else config.load.seed


def request_count(config: ExperimentConfig) -> int:
    """How many requests the load sends: ``n``, or the arrivals within ``load.duration_s``.

    Build this many requests, then pair them with their arrival times with :func:`schedule`.
    """
    if config.load.duration_s is None:
        return config.n
    return len(_config_offsets(config))


def schedule(config: ExperimentConfig, requests: list[Request]) -> list[Arrival]:
    """Pair each request, in order, with its arrival offset under ``config.load``.

    Raises:
        ValueError: the load is not serving, or ``requests`` are not :func:`request_count`
            many.

    """
    offsets = _config_offsets(config)
    if len(offsets) != len(requests):
        raise ValueError(f"the load sends {len(offsets)} requests, but {len(requests)} were "
                         "built: build request_count(config) requests")
    return [Arrival(request, offset) for request, offset in zip(requests, offsets, strict=True)]


def _config_offsets(config: ExperimentConfig) -> list[float]:
    load = config.load
    if load.request_rate is None:
        raise ValueError("arrivals need load.mode serving with a load.request_rate")
    duration_s = load.duration_s
    return arrival_offsets(load.arrival, load.request_rate, burstiness=load.burstiness,
                           count=None if duration_s is not None else config.n,
                           duration_s=duration_s, seed=load_seed(config))


__all__ = [
    "LengthStream",
    "Process",
    "arrival_offsets",
    "draw_lengths",
    "length_bounds",
    "load_seed",
    "request_count",
    "schedule",
]
