"""``vllm.entrypoints.llm`` (vllm/entrypoints/llm.py): the offline engine, ``LLM``.

The constructor has vLLM 0.10.2's signature and, like vLLM, forwards everything to
``EngineArgs`` (so an unknown keyword is a ``TypeError``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from vllm._fake import STEP_S, FakeModel, PrefixCache, record, recorded
from vllm.config import VllmConfig
from vllm.engine.arg_utils import EngineArgs
from vllm.outputs import CompletionOutput, RequestOutput
from vllm.sampling_params import SamplingParams
from vllm.usage.usage_lib import UsageContext

from harness.testing import FakeWorkers


class EngineCoreClient:
    """The V1 engine core (a separate process in vLLM); llem shuts it down on unload."""

    def __init__(self, workers: FakeWorkers) -> None:
        self.is_shut_down = False
        self.workers = workers

    def shutdown(self) -> None:
        record("engine_core.shutdown")
        self.workers.stop()
        self.is_shut_down = True


class LLMEngine:
    def __init__(self, vllm_config: VllmConfig, model: FakeModel) -> None:
        self.vllm_config = vllm_config
        self.model_config = vllm_config.model_config
        self.model = model
        parallel = vllm_config.parallel_config
        self.engine_core = EngineCoreClient(FakeWorkers(
            parallel.tensor_parallel_size * parallel.pipeline_parallel_size,
            vllm_config.cache_config.gpu_memory_utilization,
            integer_indices_only=True))
        cache = vllm_config.cache_config
        self.prefix_cache = PrefixCache(cache.block_size, cache.enable_prefix_caching)


class LLM:
    @recorded("LLM")
    def __init__(
        self,
        model: str,
        *,
        runner: str = "auto",
        convert: str = "auto",
        tokenizer: str | None = None,
        tokenizer_mode: str = "auto",
        skip_tokenizer_init: bool = False,
        trust_remote_code: bool = False,
        allowed_local_media_path: str = "",
        tensor_parallel_size: int = 1,
        dtype: str = "auto",
        quantization: str | None = None,
        revision: str | None = None,
        tokenizer_revision: str | None = None,
        seed: int | None = None,
        gpu_memory_utilization: float = 0.9,
        swap_space: float = 4,
        cpu_offload_gb: float = 0,
        enforce_eager: bool = False,
        max_seq_len_to_capture: int = 8192,
        disable_custom_all_reduce: bool = False,
        disable_async_output_proc: bool = False,
        hf_token: bool | str | None = None,
        hf_overrides: Any = None,
        mm_processor_kwargs: dict[str, Any] | None = None,
        override_pooler_config: Any = None,
        kv_cache_memory_bytes: int | None = None,
        compilation_config: Any = None,
        logits_processors: list[Any] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("disable_log_stats", True)
        engine_args = EngineArgs(
            model=model, runner=runner, convert=convert, tokenizer=tokenizer,
            tokenizer_mode=tokenizer_mode, skip_tokenizer_init=skip_tokenizer_init,
            trust_remote_code=trust_remote_code,
            allowed_local_media_path=allowed_local_media_path,
            tensor_parallel_size=tensor_parallel_size, dtype=dtype, quantization=quantization,
            revision=revision, tokenizer_revision=tokenizer_revision, seed=seed,
            gpu_memory_utilization=gpu_memory_utilization,
            kv_cache_memory_bytes=kv_cache_memory_bytes, swap_space=swap_space,
            cpu_offload_gb=cpu_offload_gb, enforce_eager=enforce_eager,
            max_seq_len_to_capture=max_seq_len_to_capture,
            disable_custom_all_reduce=disable_custom_all_reduce,
            disable_async_output_proc=disable_async_output_proc, hf_token=hf_token,
            hf_overrides=hf_overrides, mm_processor_kwargs=mm_processor_kwargs,
            override_pooler_config=override_pooler_config, compilation_config=compilation_config,
            logits_processors=logits_processors, **kwargs,
        )
        vllm_config = engine_args.create_engine_config(UsageContext.LLM_CLASS)
        fake_model = dataclasses.replace(
            FakeModel.from_directory(model),
            max_model_len=vllm_config.model_config.max_model_len,
        )
        self.llm_engine = LLMEngine(vllm_config, fake_model)
        self._counter = 0

    @recorded("LLM.generate")
    def generate(
        self,
        prompts: Any,
        sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
        *,
        use_tqdm: bool = True,
        lora_request: Any = None,
        priority: list[int] | None = None,
    ) -> list[RequestOutput]:
        if self.llm_engine.engine_core.is_shut_down:
            raise RuntimeError("the engine core has been shut down")
        prompt_list = [prompts] if isinstance(prompts, dict) else list(prompts)
        params = _per_prompt(sampling_params or SamplingParams(), len(prompt_list))
        outputs = [self._run(prompt, param)
                   for prompt, param in zip(prompt_list, params, strict=True)]
        # All requests run batched: as many steps as the longest output (prefill included).
        time.sleep(STEP_S * max((len(o.outputs[0].token_ids) for o in outputs), default=0))
        return outputs

    def _run(self, prompt: Any, params: SamplingParams) -> RequestOutput:
        ids, reason = self.llm_engine.model.continuation(prompt, params)
        prompt_ids = list(prompt["prompt_token_ids"])
        cache = self.llm_engine.prefix_cache
        cached = cache.lookup(prompt_ids)
        cache.insert(prompt_ids + ids)
        self._counter += 1
        return RequestOutput(
            request_id=str(self._counter),
            prompt=None,
            prompt_token_ids=prompt_ids,
            prompt_logprobs=None,
            outputs=[CompletionOutput(index=0, text="", token_ids=ids, finish_reason=reason)],
            finished=True,
            num_cached_tokens=cached,
        )


def _per_prompt(params: Any, count: int) -> list[SamplingParams]:
    if isinstance(params, SamplingParams):
        return [params] * count
    params = list(params)
    if len(params) != count:
        raise ValueError("The lengths of prompts and sampling_params must be the same.")
    return params
