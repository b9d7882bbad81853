from typing import Any

import pytest

from harness.checks import cache_warnings
from harness.schema.config import ExperimentConfig
from harness.schema.result import ThroughputMetrics


def work(cached: int | None) -> ThroughputMetrics:
    return ThroughputMetrics(input_tokens=24_000, output_tokens=800, requests=80, duration_s=10.0,
                             output_tokens_per_s=80.0, requests_per_s=8.0,
                             cached_prompt_tokens=cached)


def config(backend: str, section: dict[str, Any] | None = None) -> ExperimentConfig:
    return ExperimentConfig(model="m", backend=backend, **({backend: section} if section else {}))


def test_cache_hits_nobody_asked_for_are_a_warning_with_the_counts() -> None:
    [warning] = cache_warnings(config("vllm"), work(10_240))

    assert warning.code == "cross_request_cache_hits"
    assert warning.message.startswith("10240 of 24000 prompt tokens in the window")


@pytest.mark.parametrize("cached", [0, None])
def test_no_hits_or_no_report_is_no_warning(cached: int | None) -> None:
    assert cache_warnings(config("vllm"), work(cached)) == []


@pytest.mark.parametrize(("backend", "section"), [
    ("vllm", {"enable_prefix_caching": True}),
    ("tensorrt", {"enable_block_reuse": True}),
])
def test_hits_the_study_asked_for_are_recorded_not_warned(
    backend: str, section: dict[str, Any]
) -> None:
    assert cache_warnings(config(backend, section), work(10_240)) == []


def test_caching_explicitly_off_still_warns_on_hits() -> None:
    assert cache_warnings(config("vllm", {"enable_prefix_caching": False}), work(16)) != []
