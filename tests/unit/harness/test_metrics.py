import pytest

from harness import metrics
from harness.backends.base import GenerationOutput, Request, RequestOutput
from harness.backends.pytorch.generation import _request_output


def output(streaming: bool) -> GenerationOutput:
    items = []
    for i in range(4):
        start = float(i)
        times = [start + 0.5 + 0.1 * k for k in range(5)] if streaming else None
        items.append(RequestOutput(i, 10, 5, start, start + 1.0 + i * 0.1,
                                   first_token_s=start + 0.5, token_times_s=times,
                                   chunk_times_s=times))
    return GenerationOutput(items)


def test_percentiles_of_known_sample():
    summary = metrics.percentiles([1.0, 2.0, 3.0, 4.0])
    assert summary is not None
    assert summary.mean_s == 2.5 and summary.p50_s == 2.5 and summary.count == 4
    assert metrics.percentiles([]) is None


def test_itl_excludes_first_token_and_ttft_needs_streaming():
    streaming = metrics.latency(output(streaming=True))
    assert streaming.ttft is not None and streaming.ttft.mean_s == pytest.approx(0.5)
    assert streaming.itl is not None and streaming.itl.count == 4 * 4
    assert streaming.itl.mean_s == pytest.approx(0.1)
    plain = metrics.latency(output(streaming=False))
    assert plain.ttft is None and plain.itl is None
    assert plain.e2e is not None and plain.e2e.p50_s == pytest.approx(1.15)
    assert plain.tpot is None and plain.reference_point == "submission"


def test_tokens_in_one_chunk_are_one_gap_not_zero_gaps():
    # Before: 4 tokens every 40 ms in one chunk each gave ITL p50 = 0 s.
    times = [0.1 + 0.04 * (k // 4) for k in range(16)]  # 16 tokens in 4 chunks
    chunks = [0.1, 0.14, 0.18, 0.22]
    item = RequestOutput(0, 8, 16, 0.0, 0.22, first_token_s=0.1, token_times_s=times,
                         chunk_times_s=chunks)
    latency = metrics.latency(GenerationOutput([item]))
    assert latency.itl is not None and latency.itl.p50_s == pytest.approx(0.04)
    assert latency.itl.count == 3
    # TPOT = (e2e - TTFT) / (tokens - 1), as vLLM's serving benchmark and MLPerf define it
    assert latency.tpot is not None and latency.tpot.mean_s == pytest.approx(0.12 / 15)
    assert latency.ttft is not None and latency.ttft.mean_s == pytest.approx(0.1)


def test_requests_returned_all_at_once_have_no_e2e():
    # An offline engine returns every request when the whole call returns: repeating the
    # window's length n times as "e2e" would describe nothing.
    items = [RequestOutput(i, 8, 4, 0.0, None) for i in range(3)]
    latency = metrics.latency(GenerationOutput(items))
    assert latency.e2e is None and latency.ttft is None and latency.tpot is None


def test_throughput_counts():
    work = metrics.throughput(output(False), duration_s=2.0)
    assert (work.input_tokens, work.output_tokens, work.requests) == (40, 20, 4)
    assert work.output_tokens_per_s == 10.0 and work.requests_per_s == 2.0


def test_flops_is_two_times_params_times_tokens():
    work = metrics.throughput(output(False), duration_s=1.0)
    estimate = metrics.flops(1000, work)
    assert estimate.prefill_flops == 2 * 1000 * 40
    assert estimate.decode_flops == 2 * 1000 * 20
    assert estimate.flops == estimate.prefill_flops + estimate.decode_flops


def test_device_memory_from_the_time_series():
    from harness.energy.device import GpuSample
    from harness.metrics import device_memory

    def at(t, gpu, mb):
        return GpuSample(gpu_index=gpu, t_s=t, power_w=100.0, energy_counter_j=None,
                         mem_used_mb=mb)

    samples = [at(0.0, 0, 500), at(0.0, 1, 400), at(5.0, 0, 9000), at(5.0, 1, 8000)]
    window = [at(9.0, 0, 9500), at(9.0, 1, 8100), at(10.0, 0, 9200)]
    memory = device_memory(samples + window, 1.0, 4.0, window, [0, 1])
    assert memory is not None
    assert memory.model_memory_mb == (9000 - 500) + (8000 - 400)
    assert memory.peak_inference_memory_mb == (9500 - 500) + (8100 - 400)
    assert "KV-cache" in memory.method
    assert device_memory(samples, 1.0, 4.0, [], [0, 1]) is None  # no in-window reading


def test_cached_prompt_tokens_are_summed_only_when_every_request_reports_them():
    reported = output(False)
    for item, cached in zip(reported.outputs, (0, 16, 32, 0), strict=True):
        item.cached_input_tokens = cached
    assert metrics.throughput(reported, duration_s=1.0).cached_prompt_tokens == 48

    reported.outputs[2].cached_input_tokens = None  # one request's count unknown
    assert metrics.throughput(reported, duration_s=1.0).cached_prompt_tokens is None
    assert metrics.throughput(output(False), duration_s=1.0).cached_prompt_tokens is None


def _window_reading(trace, seconds):
    """Energy of a `seconds` window over one FakeGpu playing `trace` (W), read by the meter."""
    from harness.energy.device import GpuSet
    from harness.energy.meter import EnergyMeter
    from harness.energy.sampler import PowerSampler
    from harness.testing import FakeClock, FakeGpu

    clock = FakeClock()
    gpus = GpuSet([FakeGpu(trace, clock=clock, counter_update_period_s=0.1)])
    sampler = PowerSampler(gpus, interval_ms=100, clock=clock)
    meter = EnergyMeter(gpus, sampler)
    start = meter.mark()
    for _ in range(round(seconds / 0.1)):
        sampler.sample_now()
        clock.advance(0.1)
    return meter.between(start, meter.mark())


def test_dynamic_energy_per_output_token_is_above_idle_energy_over_tokens():
    # 300 W for 10 s is 3000 J; at 60 W idle, 600 J of it is idle: 2400 J dynamic, 2.4 J/token.
    reading = _window_reading([(0.0, 300.0), (1e6, 300.0)], 10.0)
    work = metrics.throughput(output(False), duration_s=10.0)  # 20 output tokens
    result = metrics.energy(reading, work.model_copy(update={"output_tokens": 1000}),
                            baseline_power_w=60.0, n_gpus=1)
    assert result.energy_per_output_token_j == pytest.approx(3.0)
    assert result.energy_dynamic_j == pytest.approx(2400.0)
    assert result.energy_dynamic_per_output_token_j == pytest.approx(2.4)


def test_dynamic_energy_per_output_token_is_null_without_a_baseline():
    reading = _window_reading([(0.0, 300.0), (1e6, 300.0)], 10.0)
    work = metrics.throughput(output(False), duration_s=10.0)
    result = metrics.energy(reading, work, baseline_power_w=None, n_gpus=1)
    assert result.energy_j == pytest.approx(3000.0)
    assert result.energy_dynamic_j is None
    assert result.energy_dynamic_per_output_token_j is None


START_S, PREFILL_S, STEP_S, LONGEST = 100.0, 0.2, 0.01, 256


def test_tpot_of_a_short_row_in_a_static_batch_is_its_own_pace_not_its_wait():
    """A 16- and a 256-token request in one PyTorch batch, one token every 10 ms. TPOT once
    took e2e at the batch's return (2.75 s) but TTFT at the short row's first token: 170 ms
    for the short row (17x its pace), 90 ms for the batch, while vLLM gave 10 ms for the same
    rows. TPOT is the row's own pace; its wait for the batch stays in e2e."""
    steps = [START_S + PREFILL_S + k * STEP_S for k in range(LONGEST)]
    end_s = steps[-1] + 0.001
    batch = [Request(0, [1, 2, 3], 16), Request(1, [1, 2, 3], LONGEST)]
    outputs = [_request_output(r, list(range(LONGEST)), (START_S, end_s), steps, True, 3)
               for r in batch]
    latency = metrics.latency(GenerationOutput(outputs, latency_reference="batch_start"))
    assert latency.itl is not None and latency.itl.p50_s == pytest.approx(STEP_S)
    assert latency.tpot is not None
    assert latency.tpot.mean_s == pytest.approx(STEP_S, rel=0.05), (
        f"TPOT mean {latency.tpot.mean_s * 1000:.0f} ms, max {latency.tpot.p99_s * 1000:.0f} "
        f"ms; every token took {STEP_S * 1000:.0f} ms")
    short = outputs[0]
    assert short.end_s == pytest.approx(end_s)  # e2e still waits for the batch
