"""Serving figures over hand-built runs whose right answers are worked out next to them."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from harness.load import LoadRun, ServedRequest
from harness.load.metrics import (
    QUEUEING_CLIENT,
    QUEUEING_CLIENT_AND_ENGINE,
    in_flight,
    latency_population,
    meets_slo,
    serving_metrics,
    window_latency,
    window_throughput,
)
from harness.schema.config import LoadConfig, SloConfig
from harness.schema.result import Percentiles


def served(request_id: int, arrival_s: float, chunks: Sequence[tuple[float, int]],
           end_s: float | None, *, sent_s: float | None = None, input_tokens: int = 10,
           error: str | None = None, cached: int | None = 0, engine_queued_s: float | None = None,
           slot_wait_s: float | None = None) -> ServedRequest:
    """One request: its chunks as (arrival time, tokens) pairs."""
    return ServedRequest(
        request_id=request_id, input_tokens=input_tokens,
        max_new_tokens=sum(tokens for _, tokens in chunks), arrival_s=arrival_s,
        sent_s=arrival_s if sent_s is None else sent_s,
        chunk_times_s=[time_s for time_s, _ in chunks],
        chunk_tokens=[tokens for _, tokens in chunks], end_s=end_s, error=error,
        cached_input_tokens=cached, engine_queued_s=engine_queued_s, slot_wait_s=slot_wait_s)


def mixed_run(changes: dict[int, dict[str, object]] | None = None) -> LoadRun:
    """Window [10, 20) after a 10 s ramp-up; the drain ends at 26.

    r0 arrives in the ramp-up and ends inside the window; r1 arrives on the opening edge; r3
    fails; r4's tokens straddle the close; r5 arrives on the closing edge (the last arrival
    of a count-mode run), so it belongs to the drain. ``changes`` overrides fields per id.
    """
    requests = [
        served(0, 8.0, [(9.0, 1), (9.5, 1), (10.5, 2), (11.0, 1)], 11.0, input_tokens=100),
        served(1, 10.0, [(10.4, 1), (10.6, 1), (10.8, 1), (11.0, 1)], 11.0, sent_s=10.001,
               input_tokens=10),
        served(2, 12.0, [(12.5, 3), (13.5, 3)], 13.5, sent_s=12.002, input_tokens=20, cached=5),
        served(3, 15.0, [(15.5, 2)], None, input_tokens=30, error="engine died"),
        served(4, 19.0, [(19.5, 1), (20.5, 1), (21.0, 1)], 21.0, sent_s=19.003,
               input_tokens=40),
        served(5, 20.0, [(25.0, 2), (26.0, 2)], 26.0, input_tokens=50),
    ]
    for request in requests:
        for name, value in (changes or {}).get(request.request_id, {}).items():
            setattr(request, name, value)
    return LoadRun(start_s=0.0, window_open_s=10.0, window_close_s=20.0, finished_s=26.0,
                   requests=requests)


def serving_load(**fields: object) -> LoadConfig:
    return LoadConfig.model_validate({"mode": "serving", "request_rate": 0.5, **fields})


def figure(summary: Percentiles | None) -> Percentiles:
    assert summary is not None
    return summary


def test_window_throughput_counts_what_the_windows_energy_paid_for():
    work = window_throughput(mixed_run())
    # Tokens by chunk time in [10, 20): r0 2+1 (it arrived in the ramp-up), r1 4, r2 6,
    # r3 2 (it failed later), r4 1 (its chunks at 20.5 and 21 are in the drain), r5 none.
    assert work.output_tokens == 3 + 4 + 6 + 2 + 1 == 16
    assert work.generated_positions == 16 and work.prompt_padding_tokens == 0
    # Prompts charged when sent: r1..r4 were sent in the window; r0 before it, r5 on its close.
    assert work.input_tokens == 10 + 20 + 30 + 40
    # Completed in the window: r0 and r1 at 11.0, r2 at 13.5; r3 failed, r4 ended at 21.
    assert work.requests == 3
    assert work.duration_s == 10.0
    assert work.output_tokens_per_s == pytest.approx(1.6)
    assert work.requests_per_s == pytest.approx(0.3)
    assert work.cached_prompt_tokens == 5


def test_cached_prompt_tokens_unknown_for_one_request_is_unknown():
    assert window_throughput(mixed_run({3: {"cached_input_tokens": None}})
                             ).cached_prompt_tokens is None
    # r0 is not sent inside the window: its unknown count does not matter
    assert window_throughput(mixed_run({0: {"cached_input_tokens": None}})
                             ).cached_prompt_tokens == 5


def test_window_latency_covers_window_arrivals_that_completed():
    run = mixed_run()
    # r0 (ramp-up) and r5 (closing edge) arrived outside; r3 failed: r1, r2 and r4 remain.
    assert [r.request_id for r in latency_population(run)] == [1, 2, 4]
    latency = window_latency(run)
    assert latency.reference_point == "arrival"
    e2e = figure(latency.e2e)  # 11.0-10, 13.5-12, 21-19
    assert (e2e.count, e2e.mean_s, e2e.p50_s) == (3, 1.5, 1.5)
    assert e2e.p90_s == pytest.approx(1.9)  # 1.5 + 0.8 x (2.0 - 1.5), linear interpolation
    ttft = figure(latency.ttft)  # 0.4, 0.5, 0.5: from arrival, not from sent
    assert ttft.p50_s == pytest.approx(0.5) and ttft.mean_s == pytest.approx(1.4 / 3)
    tpot = figure(latency.tpot)  # (11.0-10.4)/3, (13.5-12.5)/5, (21-19.5)/2
    assert tpot.count == 3 and tpot.p50_s == pytest.approx(0.2)
    assert tpot.mean_s == pytest.approx((0.2 + 0.2 + 0.75) / 3)
    itl = figure(latency.itl)  # r1: 0.2 0.2 0.2; r2: 1.0; r4: 1.0 0.5
    assert itl.count == 6 and itl.p50_s == pytest.approx(0.35)
    assert itl.mean_s == pytest.approx(3.1 / 6)


def test_serving_metrics_counts_rates_and_edges():
    metrics = serving_metrics(mixed_run(), serving_load(ramp_up_s=10.0), SloConfig(), seed=7,
                              baseline_power_w=None, mean_power_w=None)
    assert (metrics.requests_total, metrics.requests_in_window) == (6, 4)  # r1..r4
    assert metrics.requests_completed_in_window == 3 and metrics.requests_failed == 1
    assert metrics.offered_rate_rps == pytest.approx(0.4)
    assert metrics.sent_rate_rps == pytest.approx(0.4)
    assert metrics.achieved_rate_rps == pytest.approx(0.3)
    assert metrics.output_tokens_in_window == 16
    assert metrics.output_tokens_per_s == pytest.approx(1.6)
    assert (metrics.ramp_up_s, metrics.window_s, metrics.drain_s) == (10.0, 10.0, 6.0)
    assert (metrics.seed, metrics.request_rate_rps, metrics.client) == (7, 0.5, "in_process")
    assert metrics.arrival == "poisson" and metrics.burstiness is None
    assert metrics.slo_attainment is None and metrics.goodput_rps is None
    assert metrics.idle_power_share is None
    e2e = figure(metrics.e2e)
    assert e2e == figure(window_latency(mixed_run()).e2e)
    # no concurrency limit: the whole of sent - arrival is the driver's lateness
    lag = figure(metrics.arrival_lag)
    assert lag.count == 3 and lag.p50_s == pytest.approx(0.002)


def test_failed_request_is_the_whole_rate_shortfall():
    # 4 arrivals, 3 completions: 0.3 < 0.9 x 0.4. One request in flight at each edge (r0 at
    # the open, r4 at the close), so the backlog did not grow: the failure is the shortfall.
    metrics = serving_metrics(mixed_run(), serving_load(ramp_up_s=10.0), SloConfig(), seed=7,
                              baseline_power_w=None, mean_power_w=None)
    assert metrics.saturated
    assert metrics.saturation_reason == (
        "achieved rate 0.3 req/s is below 0.9 x offered 0.4 req/s (in flight: 1 at the "
        "window's open, 1 at its close, 1 of the window's arrivals failed)")


@pytest.mark.parametrize(("slo", "meeting"), [
    # TTFTs 0.4 (r1), 0.5 (r2), 0.5 (r4); TPOTs 0.2, 0.2, 0.75; r3 failed.
    (SloConfig(ttft_ms=450, tpot_ms=500), 1),   # r1 only
    (SloConfig(ttft_ms=500), 3),                # r1, r2, r4: on the target meets it
    (SloConfig(tpot_ms=500), 2),                # r1, r2
])
def test_slo_attainment_and_goodput_over_window_arrivals(slo: SloConfig, meeting: int):
    metrics = serving_metrics(mixed_run(), serving_load(ramp_up_s=10.0), slo, seed=7,
                              baseline_power_w=None, mean_power_w=None)
    assert metrics.slo_attainment == pytest.approx(meeting / 4)  # r1..r4 arrived in the window
    assert metrics.goodput_rps == pytest.approx(meeting / 10.0)
    assert (metrics.slo_ttft_ms, metrics.slo_tpot_ms) == (slo.ttft_ms, slo.tpot_ms)


def test_one_token_request_meets_any_tpot_target_and_no_token_misses_ttft():
    one_token = served(0, 0.0, [(0.3, 1)], 0.3)
    assert meets_slo(one_token, SloConfig(tpot_ms=1))
    assert not meets_slo(one_token, SloConfig(ttft_ms=200))
    no_token = served(1, 0.0, [], 0.3)
    assert not meets_slo(no_token, SloConfig(ttft_ms=1000))
    assert meets_slo(no_token, SloConfig(tpot_ms=1))
    failed = served(2, 0.0, [(0.1, 1)], None, error="timeout")
    assert not meets_slo(failed, SloConfig(ttft_ms=1000))


def test_queueing_delay_adds_engine_queue_only_when_every_request_reports_it():
    load = serving_load(ramp_up_s=10.0)
    client_only = serving_metrics(mixed_run(), load, SloConfig(), 7, None, None)
    assert client_only.queueing_delay_method == QUEUEING_CLIENT
    assert figure(client_only.queueing_delay).p50_s == pytest.approx(0.002)
    queued: dict[int, dict[str, object]] = {
        1: {"engine_queued_s": 0.1}, 2: {"engine_queued_s": 0.2}, 4: {"engine_queued_s": 0.3}}
    both = serving_metrics(mixed_run(queued), load, SloConfig(), 7, None, None)
    assert both.queueing_delay_method == QUEUEING_CLIENT_AND_ENGINE
    delay = figure(both.queueing_delay)  # 0.101, 0.202, 0.303
    assert delay.p50_s == pytest.approx(0.202) and delay.mean_s == pytest.approx(0.202)
    del queued[4]
    partial = serving_metrics(mixed_run(queued), load, SloConfig(), 7, None, None)
    assert partial.queueing_delay_method == QUEUEING_CLIENT
    assert figure(partial.queueing_delay).p50_s == pytest.approx(0.002)


@pytest.mark.parametrize(("baseline", "mean", "share"), [
    (60.0, 240.0, 0.25), (None, 240.0, None), (60.0, None, None), (60.0, 0.0, None)])
def test_idle_power_share(baseline: float | None, mean: float | None, share: float | None):
    metrics = serving_metrics(mixed_run(), serving_load(ramp_up_s=10.0), SloConfig(), 7,
                              baseline_power_w=baseline, mean_power_w=mean)
    assert metrics.idle_power_share == share


def steady_run(service_s: float, *, one_at_a_time: bool) -> LoadRun:
    """Arrivals every 1 s at 0..30 (count mode: the window closes on the last), ramp-up 5 s.

    Each request's two tokens arrive 0.5 s after it starts and when it ends. Either every
    request takes ``service_s`` from its arrival (the engine keeps up), or the engine serves
    one at a time, each for ``service_s`` (an engine queue that grows).
    """
    requests = []
    free_at = 0.0
    for k in range(31):
        begin = max(float(k), free_at) if one_at_a_time else float(k)
        end = begin + service_s
        free_at = end
        requests.append(served(k, float(k), [(begin + 0.5, 1), (end, 1)], end))
    return LoadRun(start_s=0.0, window_open_s=5.0, window_close_s=30.0,
                   finished_s=requests[-1].end_s or 0.0, requests=requests)


def test_engine_that_keeps_up_is_not_saturated_and_closing_arrival_is_drain():
    run = steady_run(2.0, one_at_a_time=False)
    metrics = serving_metrics(run, serving_load(request_rate=1.0, ramp_up_s=5.0), SloConfig(),
                              7, None, None)
    # Arrivals 5..29 in [5, 30): 25 over 25 s, exactly the rate; the arrival at 30 (on the
    # closing edge) belongs to the drain. Completions: ends 7..31 in the window are those of
    # arrivals 3..27: 25 too.
    assert metrics.requests_in_window == 25
    assert metrics.offered_rate_rps == 1.0 and metrics.achieved_rate_rps == 1.0
    assert not metrics.saturated and metrics.saturation_reason is None
    assert (in_flight(run, 5.0), in_flight(run, 30.0)) == (2, 2)  # arrivals 3, 4 / 28, 29


def test_engine_falling_behind_is_saturated_with_the_numbers():
    run = steady_run(2.0, one_at_a_time=True)
    # Request k ends at 2(k+1): ends in [5, 30) are k = 2..13, 12 completions for 25
    # arrivals. In flight at 5: arrivals 0..4 less k = 0, 1 ended = 3; at 30: 30 arrived,
    # 14 ended (k = 0..13) = 16; growth 13 = 25 - 12.
    metrics = serving_metrics(run, serving_load(request_rate=1.0, ramp_up_s=5.0), SloConfig(),
                              7, None, None)
    assert metrics.achieved_rate_rps == pytest.approx(0.48)
    assert metrics.saturated
    assert metrics.saturation_reason == (
        "achieved rate 0.48 req/s is below 0.9 x offered 1 req/s (in flight: 3 at the "
        "window's open, 16 at its close)")


def burst_run(slot_waits: bool, bursts: Sequence[int] = (3, 3)) -> LoadRun:
    """max_concurrency 1: bursts every 2 s of requests 0.1 s apart, each served in 0.5 s.

    In a burst of three, the second waits 0.4 s for the slot (e2e 0.9 s), the third 0.8 s
    (e2e 1.3 s). The engine keeps up: every burst ends 1.5 s after it starts.
    """
    requests = []
    for burst, size in enumerate(bursts):
        start = 2.0 * burst
        for i in range(size):
            arrival, sent = start + 0.1 * i, start + 0.5 * i
            requests.append(served(len(requests), arrival, [(sent + 0.25, 1), (sent + 0.5, 1)],
                                   sent + 0.5, sent_s=sent,
                                   slot_wait_s=sent - arrival if slot_waits else None))
    return LoadRun(start_s=0.0, window_open_s=0.0, window_close_s=2.0 * len(bursts),
                   finished_s=requests[-1].end_s or 0.0, requests=requests)


def test_concurrency_limit_holding_most_requests_back_is_saturation():
    load = serving_load(request_rate=1.5, max_concurrency=1)
    metrics = serving_metrics(burst_run(slot_waits=True), load, SloConfig(), 7, None, None)
    assert metrics.offered_rate_rps == metrics.achieved_rate_rps == 1.5  # 6 in 4 s, both
    # slot wait / e2e: 0, 0.4/0.9, 0.8/1.3 in each burst: median 0.444 > 0.1
    assert metrics.saturated
    assert metrics.saturation_reason == (
        "max_concurrency 1 held arrivals back: the median request waited for a slot 44% of "
        "its e2e (limit 10%)")
    # the driver itself was on time: sent - arrival is all slot wait
    lag = figure(metrics.arrival_lag)
    assert lag.count == 6 and abs(lag.mean_s) < 1e-12
    assert figure(metrics.queueing_delay).p50_s == pytest.approx(0.4)


def test_unrecorded_slot_wait_leaves_lag_unknown_and_bounds_the_wait():
    load = serving_load(request_rate=1.5, max_concurrency=1)
    metrics = serving_metrics(burst_run(slot_waits=False), load, SloConfig(), 7, None, None)
    assert metrics.arrival_lag is None  # sent - arrival cannot be split into wait and lateness
    assert metrics.saturated  # sent - arrival bounds the wait from above: same verdict


def test_concurrency_limit_rarely_binding_is_not_saturation():
    # bursts of 1, 2, 1, 1: one request in five waits; the median wait is 0
    metrics = serving_metrics(burst_run(slot_waits=True, bursts=(1, 2, 1, 1)),
                              serving_load(request_rate=1.25, max_concurrency=1), SloConfig(),
                              7, None, None)
    assert not metrics.saturated and metrics.saturation_reason is None


def test_gamma_burstiness_defaults_to_poisson_shape():
    metrics = serving_metrics(mixed_run(), serving_load(arrival="gamma", ramp_up_s=10.0),
                              SloConfig(), 7, None, None)
    assert metrics.burstiness == 1.0
    metrics = serving_metrics(mixed_run(), serving_load(arrival="gamma", burstiness=0.5,
                                                        ramp_up_s=10.0), SloConfig(), 7, None,
                              None)
    assert metrics.burstiness == 0.5


@pytest.mark.parametrize("close_s", [10.0, 9.0])
def test_empty_window_is_refused_with_its_cause(close_s: float):
    run = LoadRun(start_s=0.0, window_open_s=10.0, window_close_s=close_s, finished_s=12.0,
                  requests=[served(0, 1.0, [(1.5, 1)], 1.5)])
    for compute in (window_throughput, window_latency):
        with pytest.raises(ValueError, match="ramp_up_s must be shorter"):
            compute(run)
    with pytest.raises(ValueError, match="serving window is empty"):
        serving_metrics(run, serving_load(), SloConfig(), 7, None, None)


def test_offline_load_is_refused():
    with pytest.raises(ValueError, match="request_rate"):
        serving_metrics(mixed_run(), LoadConfig(), SloConfig(), 7, None, None)
