"""Phase split edge cases: a coarse sampler, a pass too short for the counter, no decode.

Every scenario plays a power trace whose phase energies are known exactly, read through a
counter that (like NVML) moves only every 100 ms.
"""

from __future__ import annotations

import pytest
from llem_testkit.traces import PREFILL_W, PassBackend, StaticBatches

from harness import phases
from harness.backends.base import Request


@pytest.mark.parametrize("interval_ms", [1000, 3000])
def test_window_edges_are_refused_when_the_sampler_reads_the_counter_too_coarsely(interval_ms):
    """The counter is read inside the window only at sampler ticks, and the split interpolates
    between reads: each edge between two ticks smears the phases over the tick interval. 6
    static batches of 5 s prefill at 600 W and 5 s decode at 300 W: cut at 1 s sampling, the
    prefill comes out -4.6 % and decode +9.2 %; at 3 s, -9.9 % / +19.7 %. Every interval lasts
    5 s, so a rule that looked only at the counter's 100 ms update period accepted them."""
    run = StaticBatches(prefill_s=5.0, decode_s=5.0, batches=6, interval_s=interval_ms / 1000)
    reading, output = run.window()
    assert reading.warnings == []  # nothing else would have said so
    split = phases.split_by_edges(run.meter, output.phase_marks)
    assert split.prefill.energy_j / run.true_j("prefill") - 1 < -0.04
    reason = phases.edges_problem(output, resolution_s=interval_ms / 1000)
    assert reason is not None and "resolution of the counter readings" in reason


def test_window_edges_at_the_default_sampler_get_5_s_phases_within_3_percent():
    run = StaticBatches(prefill_s=5.0, decode_s=5.0, batches=6, interval_s=0.1)
    _, output = run.window()
    assert phases.edges_problem(output, resolution_s=0.1) is None
    split = phases.split_by_edges(run.meter, output.phase_marks)
    assert split.prefill.energy_j == pytest.approx(run.true_j("prefill"), rel=0.03)
    assert split.decode.energy_j == pytest.approx(run.true_j("decode"), rel=0.03)


def test_a_prefill_pass_lasts_at_least_50_counter_updates_whatever_the_setting():
    """``energy.prefill_pass_min_s: 0`` once let a single 60 ms pass be cut by the 100 ms
    counter: it did not move, and prefill was published as 0 J (true 36 J). The pass now
    repeats until it spans 50 counter updates."""
    run = StaticBatches(prefill_s=0.06, decode_s=1.0, batches=10, interval_s=0.1)
    reading, _ = run.window()
    window_j = reading.energy_j

    # each pass: one 60 ms prefill of the whole workload (600 W in the trace after the window)
    prefill_once = PassBackend(run, 0.06)
    requests = [Request(i, [5, 6, 7, 8], 4) for i in range(10)]
    run.advance_to(run.end_s + 0.03)
    split = phases.run_prefill_pass(prefill_once, requests, run.meter, window_j,
                                    window_s=run.end_s - run.start_s, min_s=0.0,
                                    clock=run.clock, update_period_s=0.1)
    true_pass_j = PREFILL_W * 0.06
    assert split.prefill.energy_j == pytest.approx(true_pass_j, rel=0.03)
    assert split.prefill_pass is not None and split.prefill_pass.duration_s >= 5.0


def test_decode_by_difference_is_null_when_there_is_no_decode():
    """``output_len: 1`` (a prefill-only workload) has no decode at all. Window minus pass came
    out at -26 J (the counter's lag at the four edges) and was published; true: 0 J."""
    run = StaticBatches(prefill_s=10.0, decode_s=1e-3, batches=1, interval_s=0.1, start_s=0.55)
    reading, _ = run.window()
    window_j = reading.energy_j

    same_prefill = PassBackend(run, 10.0)  # the same 10 s of prefill at 600 W
    requests = [Request(i, [5, 6, 7, 8], 1) for i in range(8)]
    split = phases.run_prefill_pass(same_prefill, requests, run.meter, window_j,
                                    window_s=run.end_s - run.start_s, min_s=10.0,
                                    clock=run.clock)
    assert split.decode.duration_s >= 0.0
    assert split.decode.energy_j is None
    assert split.decode_null_reason is not None and "no decode" in split.decode_null_reason


def test_decode_within_the_counters_resolution_is_null_not_noise():
    """Requests that do ask for decode, but so little that window minus prefill is within
    the lag of the four counter readings: null with the reason, never a negative figure."""
    requests = [Request(0, [5, 6], 2)]
    decode_j, reason = phases._decode_by_difference(
        requests, window=(600.0, 1.0), pass_=(6000.0, 10.0), repeats=10, update_period_s=0.1)
    # window 600 J, prefill 600 J per repeat: decode 0 J, resolution 2 x 0.1 x (600 + 60) J
    assert decode_j is None and reason is not None and "132.000 J" in reason


def test_a_prefill_pass_slower_than_the_whole_window_leaves_decode_null():
    """A prefill repetition that outlasts the window (a busy host stalled the pass) did not
    reproduce the window's prefill: even a difference above the resolution is not decode."""
    requests = [Request(0, [5, 6], 12)]
    decode_j, reason = phases._decode_by_difference(
        requests, window=(600.0, 1.0), pass_=(300.0, 12.0), repeats=10, update_period_s=0.1)
    # window 600 J in 1 s; 30 J per repeat would leave 570 J, but each repeat took 1.2 s
    assert decode_j is None
    assert reason is not None and "1.200 s per repetition" in reason and "(1.000 s)" in reason
