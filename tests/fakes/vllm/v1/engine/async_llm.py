"""``vllm.v1.engine.async_llm`` (vllm/v1/engine/async_llm.py): the streaming engine.

``vllm.AsyncLLMEngine`` is this class in vLLM 0.10+ (V1). Each request is streamed over several
event-loop steps: the first output carries the first token (prefill), later ones carry up to
two tokens each (outputs that arrive together are merged, as vLLM's output collector does).
Like vLLM's, the engine binds itself to the event loop of its first request: a later request
on another loop fails. At most ``max_num_seqs`` requests run at once; a request beyond that waits
for one to finish before its prefill (vLLM's scheduler queue), so an offered load above the
engine's pace queues as it does in vLLM.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

from vllm._fake import STEP_S, FakeModel, PrefixCache, record, recorded
from vllm.config import VllmConfig
from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.outputs import CompletionOutput, RequestOutput
from vllm.sampling_params import RequestOutputKind, SamplingParams
from vllm.usage.usage_lib import UsageContext

from harness.testing import FakeWorkers


@dataclasses.dataclass
class RequestStateStats:
    """vllm/v1/metrics/stats.py, the two fields llem reads (0.0 until set, as vLLM's)."""

    queued_ts: float = 0.0
    scheduled_ts: float = 0.0


TOKENS_PER_OUTPUT = 2
"""Tokens one streamed output carries after the first (merged engine steps)."""


class AsyncLLM:
    def __init__(self, vllm_config: VllmConfig, model: FakeModel, log_stats: bool = False
                 ) -> None:
        self.vllm_config = vllm_config
        self.log_stats = log_stats
        self.model_config = vllm_config.model_config
        self._model = model
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running: set[str] = set()
        self.is_shut_down = False
        parallel = vllm_config.parallel_config
        self._workers = FakeWorkers(parallel.tensor_parallel_size * parallel.pipeline_parallel_size,
                                   vllm_config.cache_config.gpu_memory_utilization,
                                   integer_indices_only=True)
        cache = vllm_config.cache_config
        self._prefix_cache = PrefixCache(cache.block_size, cache.enable_prefix_caching)
        # At most max_num_seqs requests run at once; later ones wait in the scheduler's queue,
        # as vLLM's do (created on the engine's loop, at its first request).
        self._slots: asyncio.Semaphore | None = None

    @classmethod
    @recorded("AsyncLLMEngine.from_engine_args")
    def from_engine_args(
        cls,
        engine_args: AsyncEngineArgs,
        start_engine_loop: bool = True,
        usage_context: UsageContext = UsageContext.ENGINE_CONTEXT,
        stat_loggers: list[Any] | None = None,
    ) -> AsyncLLM:
        vllm_config = engine_args.create_engine_config(usage_context)
        fake_model = dataclasses.replace(
            FakeModel.from_directory(engine_args.model),
            max_model_len=vllm_config.model_config.max_model_len,
        )
        return cls(vllm_config, fake_model, log_stats=not engine_args.disable_log_stats)

    @recorded("AsyncLLMEngine.generate")
    async def generate(
        self,
        prompt: Any,
        sampling_params: SamplingParams,
        request_id: str,
        lora_request: Any = None,
        trace_headers: Any = None,
        priority: int = 0,
        data_parallel_rank: int | None = None,
    ) -> AsyncIterator[RequestOutput]:
        self._bind_to_running_loop()
        if self.is_shut_down:
            raise RuntimeError("EngineDeadError: the engine has been shut down")
        if request_id in self._running:
            raise ValueError(f"Request id {request_id} already running.")
        self._running.add(request_id)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.vllm_config.scheduler_config.max_num_seqs)
        # vLLM's RequestStateStats, only when statistics are logged: engine-core monotonic
        # times of the request's entry into the queue and of its first scheduling
        stats = RequestStateStats(queued_ts=time.monotonic()) if self.log_stats else None
        try:
            await self._slots.acquire()
        except BaseException:
            self._running.discard(request_id)
            raise
        if stats is not None:
            stats.scheduled_ts = time.monotonic()
        try:
            ids, reason = self._model.continuation(prompt, sampling_params)
            prompt_ids = list(prompt["prompt_token_ids"])
            cached = self._prefix_cache.lookup(prompt_ids)  # when the request is scheduled
            self._prefix_cache.insert(prompt_ids + ids)
            async for output in self._stream(prompt, sampling_params, request_id, ids, reason,
                                             cached):
                output.metrics = stats
                yield output
        finally:
            self._slots.release()
            self._running.discard(request_id)

    async def _stream(
        self, prompt: Any, params: SamplingParams, request_id: str, ids: list[int], reason: str,
        cached: int,
    ) -> AsyncIterator[RequestOutput]:
        sent = 0
        ends = {min(1, len(ids)), *range(1 + TOKENS_PER_OUTPUT, len(ids), TOKENS_PER_OUTPUT)}
        for end in sorted(ends | {len(ids)}):
            await asyncio.sleep(STEP_S)  # engine steps; other requests' outputs interleave
            finished = end == len(ids)
            if params.output_kind is RequestOutputKind.FINAL_ONLY and not finished:
                continue
            delta = params.output_kind is RequestOutputKind.DELTA
            chunk = ids[sent:end] if delta else ids[:end]
            sent = end
            completion = CompletionOutput(
                index=0, text="", token_ids=chunk, finish_reason=reason if finished else None
            )
            # Every output carries the request's cached tokens, as vLLM's output processor does.
            yield RequestOutput(request_id, None, list(prompt["prompt_token_ids"]), None,
                                [completion], finished, num_cached_tokens=cached)

    def _bind_to_running_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError(
                "the engine's output handler is attached to a different event loop"
            )

    def shutdown(self) -> None:
        record("AsyncLLMEngine.shutdown")
        self._workers.stop()
        self.is_shut_down = True
