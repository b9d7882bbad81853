"""Prefill and decode energy: reported only where it is measurable, with its method.

The energy counter moves only every ~100 ms (:data:`COUNTER_UPDATE_PERIOD_S`), and a reading
holds the energy up to the *last* update, so a counter read at an instant lags it by up to one
update period. Cutting the window's counter at phase edges therefore shifts energy from every
phase into the next one: a 60 ms prefill followed by decode loses about a third of its energy
to its neighbours, systematically, however many batches are summed. Two methods avoid that:

- ``window_edges``: the window's own counter readings, interpolated at each batch's phase
  edges. Used only when the phases are separated in time (static batches) *and* every prefill
  and every decode interval lasts at least :data:`MIN_PHASE_UPDATES` times the resolution of
  those readings: the counter's update period or the sampler's interval, whichever is longer
  (the counter is read inside the window only at sampler ticks), so that the lag and the
  interpolation at its two edges are a small part of it (5 s at the defaults).
- ``prefill_pass``: after the window, the same requests with one output token each (the
  prefill, whose last step yields the first token) are run again as a measured pass of their
  own, repeated until it lasts at least ``energy.prefill_pass_min_s`` and never less than
  :data:`MIN_PHASE_UPDATES` counter updates; prefill energy is the pass's energy per
  repetition, decode energy the window's minus that. Works at any prefill length and on
  engines that interleave prefill and decode (vLLM, TensorRT-LLM). It is refused when a
  cross-request cache is on (the repeated prompts would be served from it). Decode by
  difference is null when it is smaller than the counter's resolution of the readings it comes
  from (a workload of one token per request has no decode at all), and when one repetition of
  the pass lasted longer than the whole window: the pass did not reproduce the
  window's prefill, so the difference would be a wrong number, not decode.

Otherwise the split (or its decode half) is null and ``phase_split_null_reason`` says why.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from harness.backends.base import Backend, GenerationOutput, PhaseMark, Request
from harness.energy.meter import EnergyMeter
from harness.schema.result import EnergyMetrics, PhaseEnergy, PrefillPassRecord

COUNTER_UPDATE_PERIOD_S = 0.1
"""NVML's total-energy counter update period on current NVIDIA GPUs (``make device-check``
measures it on a given GPU)."""

MIN_PHASE_UPDATES = 50
"""Counter updates every phase interval must span for the ``window_edges`` method."""

MIN_PHASE_S = MIN_PHASE_UPDATES * COUNTER_UPDATE_PERIOD_S
"""5 s at NVML's 100 ms: a lag of one update at each edge is then at most 4 % of the interval."""


@dataclass(frozen=True)
class PhaseSplit:
    """Prefill and decode energy (J) and time (s) of the whole workload, and the method."""

    method: str
    prefill: PhaseEnergy
    decode: PhaseEnergy
    prefill_pass: PrefillPassRecord | None = None
    decode_null_reason: str | None = None


def shortest_phase_s(output: GenerationOutput) -> float | None:
    """Shortest prefill or decode interval of any batch in the window (s).

    None when the backend recorded no phase edges or interleaves the phases (no instant
    separates them).
    """
    if not output.phase_marks or not output.phases_separated:
        return None
    return min(min(m.prefill_end_s - m.start_s, m.end_s - m.prefill_end_s)
               for m in output.phase_marks)


def edges_problem(output: GenerationOutput,
                  resolution_s: float = COUNTER_UPDATE_PERIOD_S) -> str | None:
    """Why the window's phase edges cannot split its energy, or None when they can.

    Args:
        output: the window's generation, with its phase marks.
        resolution_s: how finely the counter is known inside the window: the longer of its
            update period and the sampler's interval (s).

    """
    if not output.phase_marks:
        return "the backend recorded no phase edges"
    if not output.phases_separated:
        return ("the backend interleaves prefill and decode (continuous batching): no instant "
                "separates them")
    shortest_s = shortest_phase_s(output)
    assert shortest_s is not None  # phase marks exist and the phases are separated
    minimum_s = MIN_PHASE_UPDATES * resolution_s
    if shortest_s < minimum_s:
        return (f"the shortest prefill or decode interval lasts {shortest_s:.3f} s, under "
                f"{minimum_s:g} s ({MIN_PHASE_UPDATES} x the {resolution_s:g} s resolution of "
                "the counter readings): its edges would shift energy between the phases")
    return None


def split_by_edges(meter: EnergyMeter, marks: list[PhaseMark]) -> PhaseSplit:
    """Prefill and decode energy from the window's counter at each batch's phase edges."""
    prefill_j = sum(meter.energy_at_times(m.start_s, m.prefill_end_s) for m in marks)
    decode_j = sum(meter.energy_at_times(m.prefill_end_s, m.end_s) for m in marks)
    return PhaseSplit(
        method="window_edges",
        prefill=PhaseEnergy(energy_j=prefill_j, duration_s=_prefill_s(marks)),
        decode=PhaseEnergy(energy_j=decode_j, duration_s=_decode_s(marks)),
    )


def prefill_requests(requests: list[Request]) -> list[Request]:
    """The same prompts asking for one token each: exactly their prefill."""
    return [Request(r.request_id, r.input_ids, 1) for r in requests]


def run_prefill_pass(backend: Backend, requests: list[Request], meter: EnergyMeter,
                     window_energy_j: float, window_s: float, min_s: float,
                     clock: Callable[[], float] = time.perf_counter,
                     update_period_s: float = COUNTER_UPDATE_PERIOD_S) -> PhaseSplit:
    """Measure the workload's prefill as its own pass; decode is the window minus it.

    Args:
        backend: the loaded backend.
        requests: the window's requests.
        meter: the run's energy meter.
        window_energy_j: the window's energy (J).
        window_s: the window's length (s).
        min_s: repeat the pass until it has lasted at least this long (s); never less than
            :data:`MIN_PHASE_UPDATES` counter updates.
        clock: the clock ``min_s`` is checked with.
        update_period_s: the energy counter's update period (s).

    """
    once = prefill_requests(requests)
    backend.synchronize()
    start = meter.mark()
    started_s, repeats = clock(), 0
    min_s = max(min_s, MIN_PHASE_UPDATES * update_period_s)
    while repeats == 0 or clock() - started_s < min_s:
        backend.generate(once)
        repeats += 1
    backend.synchronize()
    reading = meter.between(start, meter.mark())
    if reading.energy_j is None:
        raise ValueError("the prefill pass needs an energy sensor")
    prefill_j = reading.energy_j / repeats
    prefill_s = reading.duration_s / repeats
    decode_j, reason = _decode_by_difference(
        requests, (window_energy_j, window_s), (reading.energy_j, reading.duration_s),
        repeats, update_period_s)
    return PhaseSplit(
        method="prefill_pass",
        prefill=PhaseEnergy(energy_j=prefill_j, duration_s=prefill_s),
        decode=PhaseEnergy(energy_j=decode_j, duration_s=max(window_s - prefill_s, 0.0)),
        prefill_pass=PrefillPassRecord(repeats=repeats, duration_s=reading.duration_s,
                                       energy_j=reading.energy_j),
        decode_null_reason=reason,
    )


def _decode_by_difference(requests: list[Request], window: tuple[float, float],
                          pass_: tuple[float, float], repeats: int,
                          update_period_s: float) -> tuple[float | None, str | None]:
    """Decode energy as window minus prefill, or None with the reason it is not resolvable.

    Each of the four counter readings behind it (the window's and the pass's edges) lags by
    up to one update period at the power of its moment; the pass's share is divided by its
    repeats. A difference smaller than that resolution is noise, not decode energy.

    Args:
        requests: the window's requests.
        window: the window's (energy J, duration s).
        pass_: the whole prefill pass's (energy J, duration s).
        repeats: how many times the pass ran the workload's prefill.
        update_period_s: the energy counter's update period (s).

    """
    if all(request.max_new_tokens <= 1 for request in requests):
        return None, "no decode: every request asks for one token (its prefill yields it)"
    (window_j, window_s), (pass_j, pass_s) = window, pass_
    if pass_s / repeats > window_s:
        return None, (f"the prefill pass took {pass_s / repeats:.3f} s per repetition, longer "
                      f"than the whole window ({window_s:.3f} s): it did not reproduce "
                      "the window's prefill (a busy host or engine), so what is left is not "
                      "decode")
    window_w = window_j / window_s if window_s > 0 else 0.0
    pass_w = pass_j / pass_s if pass_s > 0 else 0.0
    resolution_j = 2 * update_period_s * (window_w + pass_w / repeats)
    decode_j = window_j - pass_j / repeats
    if decode_j < resolution_j:
        return None, (f"decode energy by difference ({decode_j:.3f} J) is within the counter's "
                      f"resolution of the readings it comes from ({resolution_j:.3f} J)")
    return decode_j, None


def apply(energy: EnergyMetrics, split: PhaseSplit | None, reason: str | None) -> None:
    """Write a split (or the reason there is none) into the result's energy section."""
    if split is None:
        energy.phase_split_null_reason = reason
        return
    energy.prefill, energy.decode = split.prefill, split.decode
    energy.phase_split_method = split.method  # type: ignore[assignment]
    energy.prefill_pass = split.prefill_pass
    energy.phase_split_null_reason = split.decode_null_reason


def _prefill_s(marks: list[PhaseMark]) -> float:
    return sum(m.prefill_end_s - m.start_s for m in marks)


def _decode_s(marks: list[PhaseMark]) -> float:
    return sum(m.end_s - m.prefill_end_s for m in marks)
