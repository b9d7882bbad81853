"""Prefill and decode energy: reported only where it is measurable, with its method.

The energy counter moves only every ~100 ms (:data:`COUNTER_UPDATE_PERIOD_S`), and a reading
holds the energy up to the *last* update, so a counter read at an instant lags it by up to one
update period. Cutting the window's counter at phase edges therefore shifts energy from every
phase into the next one: a 60 ms prefill followed by decode loses about a third of its energy
to its neighbours, systematically, however many batches are summed. Two methods avoid that:

- ``window_edges``: the window's own counter readings, interpolated at each batch's phase
  edges. Used only when the phases are separated in time (static batches) *and* every prefill
  and every decode interval lasts at least :data:`MIN_PHASE_UPDATES` counter updates
  (:data:`MIN_PHASE_S`), so that the lag at its two edges is a small part of it.
- ``prefill_pass``: after the window, the same requests with one output token each (the
  prefill, whose last step yields the first token) are run again as a measured pass of their
  own, repeated until it lasts at least ``energy.prefill_pass_min_s``; prefill energy is the
  pass's energy per repetition, decode energy the window's minus that. Works at any prefill
  length and on engines that interleave prefill and decode (vLLM, TensorRT-LLM). It is refused
  when a cross-request cache is on (the repeated prompts would be served from it).

Otherwise the split is null and ``phase_split_null_reason`` says why.
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
"""5 s: a lag of one update at each edge is then at most 4 % of the interval's time."""


@dataclass(frozen=True)
class PhaseSplit:
    """Prefill and decode energy (J) and time (s) of the whole workload, and the method."""

    method: str
    prefill: PhaseEnergy
    decode: PhaseEnergy
    prefill_pass: PrefillPassRecord | None = None


def edges_problem(output: GenerationOutput) -> str | None:
    """Why the window's phase edges cannot split its energy, or None when they can."""
    if not output.phase_marks:
        return "the backend recorded no phase edges"
    if not output.phases_separated:
        return ("the backend interleaves prefill and decode (continuous batching): no instant "
                "separates them")
    shortest_s = min(min(m.prefill_end_s - m.start_s, m.end_s - m.prefill_end_s)
                     for m in output.phase_marks)
    if shortest_s < MIN_PHASE_S:
        return (f"the shortest prefill or decode interval lasts {shortest_s:.3f} s, under "
                f"{MIN_PHASE_S:g} s ({MIN_PHASE_UPDATES} updates of the energy counter): its "
                "edges would shift energy between the phases")
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
                     clock: Callable[[], float] = time.perf_counter) -> PhaseSplit:
    """Measure the workload's prefill as its own pass; decode is the window minus it.

    Args:
        backend: the loaded backend.
        requests: the window's requests.
        meter: the run's energy meter.
        window_energy_j: the window's energy (J).
        window_s: the window's length (s).
        min_s: repeat the pass until it has lasted at least this long (s).
        clock: the clock ``min_s`` is checked with.

    """
    once = prefill_requests(requests)
    backend.synchronize()
    start = meter.mark()
    started_s, repeats = clock(), 0
    while repeats == 0 or clock() - started_s < min_s:
        backend.generate(once)
        repeats += 1
    backend.synchronize()
    reading = meter.between(start, meter.mark())
    if reading.energy_j is None:
        raise ValueError("the prefill pass needs an energy sensor")
    prefill_j = reading.energy_j / repeats
    prefill_s = reading.duration_s / repeats
    return PhaseSplit(
        method="prefill_pass",
        prefill=PhaseEnergy(energy_j=prefill_j, duration_s=prefill_s),
        decode=PhaseEnergy(energy_j=window_energy_j - prefill_j,
                           duration_s=max(window_s - prefill_s, 0.0)),
        prefill_pass=PrefillPassRecord(repeats=repeats, duration_s=reading.duration_s,
                                       energy_j=reading.energy_j),
    )


def apply(energy: EnergyMetrics, split: PhaseSplit | None, reason: str | None) -> None:
    """Write a split (or the reason there is none) into the result's energy section."""
    if split is None:
        energy.phase_split_null_reason = reason
        return
    energy.prefill, energy.decode = split.prefill, split.decode
    energy.phase_split_method = split.method  # type: ignore[assignment]
    energy.prefill_pass = split.prefill_pass


def _prefill_s(marks: list[PhaseMark]) -> float:
    return sum(m.prefill_end_s - m.start_s for m in marks)


def _decode_s(marks: list[PhaseMark]) -> float:
    return sum(m.end_s - m.prefill_end_s for m in marks)
