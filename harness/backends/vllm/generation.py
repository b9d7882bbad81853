"""Generating with vLLM: fixed-length sampling parameters, one offline call or many streams.

Every request asks for exactly ``max_new_tokens``: ``min_tokens = max_tokens`` with
``ignore_eos``, so an EOS the model emits neither ends the request nor is masked, and every
configuration does the same work. Output is not detokenised (the harness counts tokens, it never
reads text). The module takes the imported ``vllm`` module and the engine as arguments and
imports nothing from vLLM itself.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from dataclasses import dataclass, field
from typing import Any

from harness.backends.base import PhaseMark, Request, RequestOutput
from harness.backends.common import sampling_values
from harness.errors import BackendError
from harness.load import StreamChunk, StreamFn
from harness.schema.config import DecoderConfig

TOP_K_OFF = -1
"""vLLM's "no top-k" value. vLLM 0.8-0.10 reject top_k 0 (the config's "off"); -1 means off in
every version."""

_LENGTH_FIX = (
    "remove passthrough_kwargs that change what the engine generates, and check that "
    "input_len + output_len fits the model's context"
)


def decoding_kwargs(decoder: DecoderConfig) -> dict[str, Any]:
    """``SamplingParams`` decoding fields for the config's decoder, every default resolved."""
    if decoder.mode == "sampling":
        values = sampling_values(decoder)
        return {**values, "top_k": values["top_k"] or TOP_K_OFF}
    return {"temperature": 0.0}  # greedy; beam search is rejected by the rules table


def fixed_length_kwargs(max_new_tokens: int) -> dict[str, Any]:
    """``SamplingParams`` fields that make a request generate exactly ``max_new_tokens``."""
    return {
        "n": 1,
        "max_tokens": max_new_tokens,
        "min_tokens": max_new_tokens,
        "ignore_eos": True,
        "detokenize": False,
    }


def sampling_params(
    vllm: Any, decoder: DecoderConfig, requests: list[Request], **extra: Any
) -> Any:
    """One ``SamplingParams`` for all requests, or one per request when their lengths differ."""
    decoding = decoding_kwargs(decoder)
    lengths = {request.max_new_tokens for request in requests}
    if len(lengths) == 1:
        return vllm.SamplingParams(**fixed_length_kwargs(lengths.pop()), **decoding, **extra)
    return [
        vllm.SamplingParams(**fixed_length_kwargs(request.max_new_tokens), **decoding, **extra)
        for request in requests
    ]


def token_prompt(request: Request) -> dict[str, list[int]]:
    """The request as a ``vllm.inputs.TokensPrompt`` (a typed dict): no tokenisation in vLLM."""
    return {"prompt_token_ids": list(request.input_ids)}


def generate_offline(
    llm: Any, vllm: Any, decoder: DecoderConfig, requests: list[Request]
) -> list[RequestOutput]:
    """All requests in one ``LLM.generate`` call; each is timed as the whole call.

    ``LLM.generate`` returns only when every request has finished, and V1 engines leave
    ``RequestOutput.metrics`` empty, so no per-request or per-token time is observable here.
    """
    params = sampling_params(vllm, decoder, requests)
    prompts = [token_prompt(request) for request in requests]
    start_s = time.perf_counter()
    results = llm.generate(prompts, params, use_tqdm=False)
    if len(results) != len(requests):
        raise BackendError(
            f"vLLM returned {len(results)} outputs for {len(requests)} prompts", fix=_LENGTH_FIX
        )
    outputs = []
    for request, result in zip(requests, results, strict=True):
        ids = _checked_ids(request, list(result.outputs[0].token_ids))
        # LLM.generate returns every request at once: no request's own end is observed.
        output = _output(request, ids, start_s, None)
        output.cached_input_tokens = cached_tokens(result)
        outputs.append(output)
    return outputs


def cached_tokens(result: Any) -> int | None:
    """A ``RequestOutput``'s prompt tokens served from the prefix cache (None: not reported).

    ``num_cached_tokens`` is the request's count, the same on every output of it.
    """
    value = getattr(result, "num_cached_tokens", None)
    return None if value is None else int(value)


@dataclass
class _Stream:
    """Tokens of one streamed request and the time each reached this process."""

    ids: list[int] = field(default_factory=list)
    times_s: list[float] = field(default_factory=list)
    chunk_times_s: list[float] = field(default_factory=list)
    cached_tokens: int | None = None


def generate_streaming(
    loop: asyncio.AbstractEventLoop,
    engine: Any,
    vllm: Any,
    decoder: DecoderConfig,
    requests: list[Request],
    call_id: int,
) -> tuple[list[RequestOutput], PhaseMark]:
    """All requests submitted at once to the async engine and streamed concurrently.

    Every output the engine yields carries the tokens new since the previous one (``DELTA``);
    each token is stamped with the time its output arrived. The phase mark ends prefill at the
    instant the last request received its first token.

    Args:
        loop: the backend's event loop; the engine's output handler lives on it, so every call
            must use the same one.
        engine: the ``AsyncLLMEngine``.
        vllm: the imported ``vllm`` module.
        decoder: the decoding settings.
        requests: the requests, all submitted at the start of the call.
        call_id: distinguishes this call's request ids from earlier calls'.

    """
    delta = importlib.import_module("vllm.sampling_params").RequestOutputKind.DELTA
    streams = [
        _stream(
            engine,
            token_prompt(request),
            sampling_params(vllm, decoder, [request], output_kind=delta),
            f"llem-{call_id}-{request.request_id}",
        )
        for request in requests
    ]
    start_s = time.perf_counter()
    streamed = loop.run_until_complete(_all(streams))
    end_s = time.perf_counter()
    outputs = [
        _streamed_output(request, stream, start_s)
        for request, stream in zip(requests, streamed, strict=True)
    ]
    prefill_end_s = max(output.first_token_s or start_s for output in outputs)
    return outputs, PhaseMark(start_s=start_s, prefill_end_s=prefill_end_s, end_s=end_s)


async def _stream(
    engine: Any, prompt: dict[str, list[int]], params: Any, request_id: str
) -> _Stream:
    stream = _Stream()
    async for output in engine.generate(prompt, params, request_id):
        arrived_s = time.perf_counter()
        new_ids = list(output.outputs[0].token_ids)
        stream.ids.extend(new_ids)
        stream.times_s.extend([arrived_s] * len(new_ids))
        if new_ids:
            stream.chunk_times_s.append(arrived_s)
        reported = cached_tokens(output)
        if reported is not None:  # a count, not a delta: every output repeats it
            stream.cached_tokens = max(stream.cached_tokens or 0, reported)
    return stream


async def _all(streams: list[Any]) -> list[_Stream]:
    tasks = [asyncio.ensure_future(stream) for stream in streams]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        # One failed request must not leave the others running into the next call.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _streamed_output(request: Request, stream: _Stream, start_s: float) -> RequestOutput:
    ids = _checked_ids(request, stream.ids)
    output = _output(request, ids, start_s, stream.times_s[-1])
    output.first_token_s = stream.times_s[0]
    output.token_times_s = list(stream.times_s)
    output.chunk_times_s = list(stream.chunk_times_s)
    output.cached_input_tokens = stream.cached_tokens
    return output


def _checked_ids(request: Request, ids: list[int]) -> list[int]:
    _check_length(request, len(ids))
    return ids


def _check_length(request: Request, produced: int) -> None:
    if produced != request.max_new_tokens:
        raise BackendError(
            f"request {request.request_id} produced {produced} tokens, expected exactly "
            f"{request.max_new_tokens} (min_tokens = max_tokens, ignore_eos)",
            fix=_LENGTH_FIX,
        )


def _output(request: Request, ids: list[int], start_s: float,
            end_s: float | None) -> RequestOutput:
    return RequestOutput(
        request_id=request.request_id,
        input_tokens=len(request.input_ids),
        output_tokens=len(ids),
        start_s=start_s,
        end_s=end_s,
        output_ids=ids,
    )


def serving_stream(engine: Any, vllm: Any, decoder: DecoderConfig) -> StreamFn:
    """Serving mode, in process: one request at a time into the running async engine.

    Each request is submitted when the load driver calls the returned function (at its
    arrival), with ``output_kind=DELTA``; every output becomes one :class:`StreamChunk`. A
    request that ends with other than exactly ``max_new_tokens`` tokens raises, so the driver
    records it as failed instead of counting short work.
    """
    delta = importlib.import_module("vllm.sampling_params").RequestOutputKind.DELTA

    async def stream(request: Request, key: str) -> Any:
        params = sampling_params(vllm, decoder, [request], output_kind=delta)
        received = 0
        async for output in engine.generate(token_prompt(request), params, key):
            ids = list(output.outputs[0].token_ids)
            received += len(ids)
            yield StreamChunk(token_ids=ids, cached_tokens=cached_tokens(output),
                              engine_queued_s=queued_s(output))
        _check_length(request, received)

    return stream


def queued_s(result: Any) -> float | None:
    """Time the request waited in vLLM's scheduler queue, where its output reports it.

    V1 engines attach ``RequestStateStats`` (``queued_ts``, ``scheduled_ts``: engine-core
    monotonic times) as ``metrics`` only when statistics are logged; otherwise ``metrics`` is
    None and so is this.
    """
    metrics = getattr(result, "metrics", None)
    queued = getattr(metrics, "queued_ts", None)
    scheduled = getattr(metrics, "scheduled_ts", None)
    if not queued or not scheduled:
        return None
    return max(0.0, float(scheduled) - float(queued))
