import pytest

from harness import metrics
from harness.backends.base import GenerationOutput, RequestOutput


def output(streaming: bool) -> GenerationOutput:
    items = []
    for i in range(4):
        start = float(i)
        times = [start + 0.5 + 0.1 * k for k in range(5)] if streaming else None
        items.append(RequestOutput(i, 10, 5, start, start + 1.0 + i * 0.1,
                                   first_token_s=start + 0.5, token_times_s=times))
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
