"""Serving figures from what the driver recorded: pure functions over a :class:`LoadRun`.

No clock and no device: every figure is computed from the times the driver stamped. The
window holds every instant t with ``open <= t < close`` (half open: in count mode the window
closes on the last arrival, which belongs to the drain). Arrivals, which are scheduled times,
are placed against the scheduled edges; tokens, sends and ends, which are clock readings, against
the measured edges (when the energy counters were read), so that the work counted is the work
the window's energy paid for. docs/serving.md gives each figure's method for users.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np

from harness.load import LoadRun, ServedRequest
from harness.metrics import percentiles
from harness.schema.config import LoadConfig, SloConfig
from harness.schema.result import LatencyMetrics, Percentiles, ServingMetrics, ThroughputMetrics

ACHIEVED_SHARE = 0.9
"""Saturated when the achieved rate is below this share of the offered rate."""

SLOT_WAIT_SHARE = 0.1
"""Saturated when the median request waited for a concurrency slot longer than this share of
its end-to-end latency."""

QueueingMethod = Literal["client_wait", "client_wait+engine_queue"]

QUEUEING_CLIENT: QueueingMethod = "client_wait"
"""queueing_delay is sent - arrival only: the engine reported no queue time for some request."""

QUEUEING_CLIENT_AND_ENGINE: QueueingMethod = "client_wait+engine_queue"
"""queueing_delay is sent - arrival plus the engine's reported queue time."""


def window_throughput(run: LoadRun) -> ThroughputMetrics:
    """The work of the steady-state window: what its energy paid for.

    Output tokens are those whose chunk arrived inside the window, whichever request they
    belong to (one that arrived in the ramp-up, or that failed later, included). Prompt tokens
    are charged when their request is sent: the prompts of requests sent inside the window,
    an approximation, since an engine may prefill a prompt sent just before the close after
    it. Requests are those that completed inside the window.

    Raises:
        ValueError: the window is empty (it closes at or before it opens).
    """
    _check_window(run)
    sent = [r for r in run.requests if _measured_inside(run, r.sent_s)]
    output_tokens = sum(tokens for r in run.requests
                        for time_s, tokens in zip(r.chunk_times_s, r.chunk_tokens, strict=True)
                        if _measured_inside(run, time_s))
    requests = sum(1 for r in run.requests if _completed(r) and _measured_inside(run, r.end_s))
    duration_s = run.measured_window_s
    return ThroughputMetrics(
        input_tokens=sum(r.input_tokens for r in sent),
        output_tokens=output_tokens,
        generated_positions=output_tokens,
        prompt_padding_tokens=0,
        requests=requests,
        duration_s=duration_s,
        output_tokens_per_s=output_tokens / duration_s,
        requests_per_s=requests / duration_s,
        cached_prompt_tokens=_cached_prompt_tokens(sent),
    )


def window_latency(run: LoadRun) -> LatencyMetrics:
    """Per-request latency of the requests that arrived inside the window and completed.

    Every figure counts from arrival (the request's due time), so a wait for a concurrency
    slot, the driver's lateness and the engine's queue are all in TTFT and e2e. e2e: end of
    stream - arrival; TTFT: first chunk - arrival; TPOT: (last chunk - first chunk) /
    (tokens - 1), requests of one token excluded; ITL: gaps between consecutive chunks.

    Raises:
        ValueError: the window is empty.
    """
    _check_window(run)
    population = latency_population(run)
    return LatencyMetrics(
        reference_point="arrival",
        e2e=percentiles(_present(_e2e(r) for r in population)),
        ttft=percentiles(_present(_ttft(r) for r in population)),
        tpot=percentiles(_present(_tpot(r) for r in population)),
        itl=percentiles([gap for r in population for gap in _itl(r)]),
    )


def serving_metrics(run: LoadRun, load: LoadConfig, slo: SloConfig, seed: int,
                    baseline_power_w: float | None,
                    mean_power_w: float | None) -> ServingMetrics:
    """Every serving figure of one run.

    Args:
        run: what the driver recorded.
        load: the run's ``load:`` section (serving mode).
        slo: the run's ``slo:`` section.
        seed: the seed the arrivals and lengths were drawn with.
        baseline_power_w: idle power, summed over the measured GPUs (None: not measured).
        mean_power_w: mean power of the window (None: no sensor).

    Raises:
        ValueError: the window is empty, or ``load`` has no request rate.
    """
    _check_window(run)
    if load.request_rate is None:
        raise ValueError("serving metrics need load.request_rate: set load.mode: serving "
                         "with a request_rate")
    window_s = run.window_s
    arrived = [r for r in run.requests if _inside(run, r.arrival_s)]
    population = latency_population(run)
    latency = window_latency(run)
    work = window_throughput(run)
    queueing, method = _queueing_delay(population)
    attainment, goodput = _slo_figures(arrived, slo, window_s)
    offered = len(arrived) / window_s
    achieved = work.requests_per_s
    saturated, reason = saturation(run, load.max_concurrency, offered, achieved)
    return ServingMetrics(
        client=load.client,
        arrival=load.arrival,
        burstiness=(load.burstiness or 1.0) if load.arrival == "gamma" else None,
        request_rate_rps=load.request_rate,
        max_concurrency=load.max_concurrency,
        seed=seed,
        ramp_up_s=run.window_open_s - run.start_s,
        window_s=window_s,
        drain_s=max(run.finished_s - run.window_close_s, 0.0),
        requests_total=len(run.requests),
        requests_in_window=len(arrived),
        requests_completed_in_window=work.requests,
        requests_failed=sum(1 for r in run.requests if not _completed(r)),
        offered_rate_rps=offered,
        sent_rate_rps=sum(1 for r in run.requests
                          if _measured_inside(run, r.sent_s)) / run.measured_window_s,
        achieved_rate_rps=achieved,
        output_tokens_in_window=work.output_tokens,
        output_tokens_per_s=work.output_tokens_per_s,
        arrival_lag=percentiles(_present(
            _arrival_lag(r, load.max_concurrency is not None) for r in population)),
        queueing_delay=queueing,
        queueing_delay_method=method,
        ttft=latency.ttft, tpot=latency.tpot, itl=latency.itl, e2e=latency.e2e,
        slo_ttft_ms=slo.ttft_ms,
        slo_tpot_ms=slo.tpot_ms,
        slo_attainment=attainment,
        goodput_rps=goodput,
        idle_power_share=_idle_power_share(baseline_power_w, mean_power_w),
        saturated=saturated,
        saturation_reason=reason,
    )


def latency_population(run: LoadRun) -> list[ServedRequest]:
    """Requests that arrived inside the window and completed: every latency figure's sample."""
    return [r for r in run.requests if _inside(run, r.arrival_s) and _completed(r)]


def meets_slo(request: ServedRequest, slo: SloConfig) -> bool:
    """Whether a request completed within every target set.

    A request with no token has no TTFT and misses a TTFT target. A one-token request has no
    TPOT and meets any TPOT target (it has no decode to be slow in), as in vLLM's serving
    benchmark, which counts its TPOT as 0 for goodput.
    """
    if not _completed(request):
        return False
    if slo.ttft_ms is not None:
        ttft = _ttft(request)
        if ttft is None or ttft > slo.ttft_ms / 1000.0:
            return False
    if slo.tpot_ms is not None:
        tpot = _tpot(request)
        if tpot is not None and tpot > slo.tpot_ms / 1000.0:
            return False
    return True


def in_flight(run: LoadRun, time_s: float) -> int:
    """Requests that arrived before ``time_s`` and had not ended by it (slot waiters included).

    Failed requests are left out: the driver records no end for them. With these edges, the
    growth from the window's open to its close is exactly the window's arrivals minus its
    completions (of requests that did not fail).
    """
    return sum(1 for r in run.requests
               if r.error is None and r.arrival_s < time_s
               and (r.end_s is None or r.end_s >= time_s))


def saturation(run: LoadRun, max_concurrency: int | None, offered_rps: float,
               achieved_rps: float) -> tuple[bool, str | None]:
    """Whether the engine did not keep up, and why (docs/serving.md, "Saturation").

    Saturated when either holds:

    - rate: the achieved rate is below ``ACHIEVED_SHARE`` x the offered rate;
    - concurrency slots: with ``max_concurrency`` set, the median over the window's completed
      requests of (wait for a slot / e2e) exceeds ``SLOT_WAIT_SHARE``.
    """
    reasons = [reason for reason in (
        _rate_shortfall(run, offered_rps, achieved_rps),
        _slot_wait_excess(run, max_concurrency),
    ) if reason is not None]
    return bool(reasons), "; ".join(reasons) or None


def _rate_shortfall(run: LoadRun, offered_rps: float, achieved_rps: float) -> str | None:
    if offered_rps <= 0 or achieved_rps >= ACHIEVED_SHARE * offered_rps:
        return None
    failed = sum(1 for r in run.requests if _inside(run, r.arrival_s) and not _completed(r))
    failures = f", {failed} of the window's arrivals failed" if failed else ""
    return (f"achieved rate {achieved_rps:.3g} req/s is below {ACHIEVED_SHARE:g} x offered "
            f"{offered_rps:.3g} req/s (in flight: {in_flight(run, run.window_open_s)} at the "
            f"window's open, {in_flight(run, run.window_close_s)} at its close{failures})")


def _slot_wait_excess(run: LoadRun, max_concurrency: int | None) -> str | None:
    if max_concurrency is None:
        return None
    shares = [_client_wait(r) / e2e for r in latency_population(run)
              if (e2e := _e2e(r)) is not None and e2e > 0]
    if not shares:
        return None
    median = float(np.median(shares))
    if median <= SLOT_WAIT_SHARE:
        return None
    return (f"max_concurrency {max_concurrency} held arrivals back: the median request waited "
            f"for a slot {median:.0%} of its e2e (limit {SLOT_WAIT_SHARE:.0%})")


def _queueing_delay(population: Sequence[ServedRequest]) -> tuple[Percentiles | None,
                                                                   QueueingMethod | None]:
    """Arrival to first scheduled, and which parts it includes.

    The engine's queue time is added only when every request reports it: a mix would put
    two different quantities into one distribution.
    """
    if not population:
        return None, None
    client = [r.sent_s - r.arrival_s for r in population]
    engine = [r.engine_queued_s for r in population]
    if any(queued is None for queued in engine):
        return percentiles(client), QUEUEING_CLIENT
    total = [wait + (queued or 0.0) for wait, queued in zip(client, engine, strict=True)]
    return percentiles(total), QUEUEING_CLIENT_AND_ENGINE


def _slo_figures(arrived: Sequence[ServedRequest], slo: SloConfig,
                 window_s: float) -> tuple[float | None, float | None]:
    """SLO attainment over the window's arrivals and goodput; None without SLOs."""
    if slo.ttft_ms is None and slo.tpot_ms is None:
        return None, None
    meeting = sum(1 for r in arrived if meets_slo(r, slo))
    attainment = meeting / len(arrived) if arrived else None
    return attainment, meeting / window_s


def _idle_power_share(baseline_power_w: float | None, mean_power_w: float | None) -> float | None:
    if baseline_power_w is None or not mean_power_w:
        return None
    return baseline_power_w / mean_power_w


def _cached_prompt_tokens(requests: Sequence[ServedRequest]) -> int | None:
    """Summed over the requests; None when any count is unknown.

    A partial sum would read as a complete one.
    """
    counts = [r.cached_input_tokens for r in requests]
    if any(count is None for count in counts):
        return None
    return sum(count for count in counts if count is not None)


def _arrival_lag(request: ServedRequest, limited: bool) -> float | None:
    """The driver's lateness: sent - arrival less any wait for a slot (None: not separable)."""
    if request.slot_wait_s is not None:
        return request.sent_s - request.arrival_s - request.slot_wait_s
    return None if limited else request.sent_s - request.arrival_s


def _client_wait(request: ServedRequest) -> float:
    """The wait for a slot; sent - arrival (an upper bound) where the driver did not time it."""
    if request.slot_wait_s is not None:
        return request.slot_wait_s
    return request.sent_s - request.arrival_s


def _e2e(request: ServedRequest) -> float | None:
    return None if request.end_s is None else request.end_s - request.arrival_s


def _ttft(request: ServedRequest) -> float | None:
    first = request.first_token_s
    return None if first is None else first - request.arrival_s


def _tpot(request: ServedRequest) -> float | None:
    tokens = request.output_tokens
    if tokens < 2 or not request.chunk_times_s:
        return None
    return (request.chunk_times_s[-1] - request.chunk_times_s[0]) / (tokens - 1)


def _itl(request: ServedRequest) -> list[float]:
    times = request.chunk_times_s
    return [later - earlier for earlier, later in zip(times, times[1:], strict=False)]


def _completed(request: ServedRequest) -> bool:
    return request.error is None and request.end_s is not None


def _inside(run: LoadRun, time_s: float | None) -> bool:
    """A scheduled time (an arrival) inside the scheduled window."""
    return time_s is not None and run.window_open_s <= time_s < run.window_close_s


def _measured_inside(run: LoadRun, time_s: float | None) -> bool:
    """A clock reading (a token, a send, an end) inside the interval the energy covers."""
    opened, closed = run.measured_edges
    return time_s is not None and opened <= time_s < closed


def _present(values: Iterable[float | None]) -> list[float]:
    return [value for value in values if value is not None]


def _check_window(run: LoadRun) -> None:
    if run.window_s <= 0 or run.measured_window_s <= 0:
        raise ValueError(
            f"the serving window is empty: it opens {run.window_open_s - run.start_s:.3f} s "
            f"after the load's start and closes {run.window_close_s - run.start_s:.3f} s after "
            "it; load.ramp_up_s must be shorter than the arrivals' span (load.duration_s, or "
            "the last arrival's offset)")
