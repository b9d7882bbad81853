"""One static batch through ``model.generate``: fixed length, per-step timestamps.

Each batch generates exactly as many tokens as its longest request asks for:
``min_new_tokens`` is set equal to ``max_new_tokens``, which masks EOS until the end, so every
configuration does the same work whatever the model would have said.

Timing comes from inside ``generate``: a stopping criterion that never stops records the time
of every decoding step. transformers calls it once per step, right after the step's token has
been appended, so its first call marks the end of prefill (the batch's first token exists) and
the phase split is exact. On CUDA the device is synchronised before the first timestamp, and
before every timestamp when per-token times are asked for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.backends.base import PhaseMark, Request, RequestOutput
from harness.backends.common import num_beams, sampling_values
from harness.errors import BackendError
from harness.schema.config import DecoderConfig

_LENGTH_FIX = (
    "remove passthrough_kwargs that change the generation length (max_length, stop_strings, "
    "max_time, ...)"
)


def decoding_kwargs(decoder: DecoderConfig) -> dict[str, Any]:
    """Return the decoding arguments for ``generate``, every default resolved."""
    if decoder.mode == "sampling":
        return {"do_sample": True, "num_beams": 1, **sampling_values(decoder)}
    if decoder.mode == "beam":
        return {"do_sample": False, "num_beams": num_beams(decoder)}
    return {"do_sample": False, "num_beams": 1}


class StepClock:
    """A stopping criterion that never stops and timestamps every decoding step.

    Args:
        synchronize: waits for the device (a no-op on CPU).
        sync_every_step: synchronise before every timestamp, not only the first one.

    """

    def __init__(self, synchronize: Callable[[], None], *, sync_every_step: bool) -> None:
        self.times_s: list[float] = []
        self._synchronize = synchronize
        self._sync_every_step = sync_every_step

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        """Record the time the newest token exists; answer "not done" for every sequence."""
        import torch

        if self._sync_every_step or not self.times_s:
            self._synchronize()
        self.times_s.append(time.perf_counter())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


@dataclass(frozen=True)
class BatchRun:
    """How to run one batch.

    Attributes:
        model: the loaded transformers model.
        generate_kwargs: decoding and passthrough arguments (without lengths and timing).
        pad_token_id: id used for left padding.
        synchronize: waits for the device.
        streaming: record every token's time, synchronising at every step.

    """

    model: Any
    generate_kwargs: dict[str, Any]
    pad_token_id: int
    synchronize: Callable[[], None]
    streaming: bool


def generate_batch(run: BatchRun, batch: list[Request]) -> tuple[list[RequestOutput], PhaseMark]:
    """Generate one static batch; return its requests' outputs and its phase edges.

    Raises:
        BackendError: generate failed or did not produce exactly the asked-for length.

    """
    length = max(request.max_new_tokens for request in batch)
    input_ids, attention_mask = _pad_left(batch, run.pad_token_id, run.model.device)
    clock = StepClock(run.synchronize, sync_every_step=run.streaming)
    run.synchronize()
    start_s = time.perf_counter()
    sequences = _generate(run, input_ids, attention_mask, length, clock)
    run.synchronize()
    end_s = time.perf_counter()
    new_tokens = sequences[:, input_ids.shape[1] :].tolist()
    _check_shape(new_tokens, len(batch), clock.times_s, length)
    width = input_ids.shape[1]
    outputs = [
        _request_output(request, token_ids, (start_s, end_s), clock.times_s, run.streaming,
                        width)
        for request, token_ids in zip(batch, new_tokens, strict=True)
    ]
    return outputs, PhaseMark(start_s=start_s, prefill_end_s=clock.times_s[0], end_s=end_s)


def _pad_left(batch: list[Request], pad_token_id: int, device: Any) -> tuple[Any, Any]:
    import torch

    width = max(len(request.input_ids) for request in batch)
    rows = [[pad_token_id] * (width - len(r.input_ids)) + list(r.input_ids) for r in batch]
    masks = [[0] * (width - len(r.input_ids)) + [1] * len(r.input_ids) for r in batch]
    return torch.tensor(rows, device=device), torch.tensor(masks, device=device)


def _generate(
    run: BatchRun, input_ids: Any, attention_mask: Any, length: int, clock: StepClock
) -> Any:
    import torch
    from transformers import StoppingCriteriaList

    kwargs = {
        **run.generate_kwargs,
        "max_new_tokens": length,
        "min_new_tokens": length,  # masks EOS until the end: fixed work
        "pad_token_id": run.pad_token_id,
        "stopping_criteria": StoppingCriteriaList([clock]),
    }
    try:
        with torch.inference_mode():
            return run.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    except RuntimeError as error:
        raise _runtime_error(error) from error
    except (ValueError, TypeError) as error:
        raise BackendError(
            f"generate() rejected its arguments: {error}",
            fix="check the decoder settings and passthrough_kwargs",
        ) from error


def _request_output(
    request: Request,
    token_ids: list[int],
    edges_s: tuple[float, float],
    step_times_s: list[float],
    streaming: bool,
    width: int,
) -> RequestOutput:
    """One row of a static batch.

    The row is finished for its caller when ``generate`` returns the whole batch, whatever
    its own length: a shorter request's later positions are still computed (and counted in
    ``generated_positions``); only its tokens beyond its length are dropped.
    """
    count = request.max_new_tokens
    times_s = step_times_s[:count]
    start_s, end_s = edges_s
    return RequestOutput(
        request_id=request.request_id,
        input_tokens=len(request.input_ids),
        output_tokens=count,
        start_s=start_s,
        end_s=end_s,
        first_token_s=times_s[0],
        token_times_s=list(times_s) if streaming else None,
        chunk_times_s=list(times_s) if streaming else None,  # one token per decoding step
        output_ids=token_ids[:count],
        cached_input_tokens=0,  # each generate call starts from an empty KV cache
        generated_positions=len(step_times_s),
        padding_tokens=width - len(request.input_ids),
    )


def _check_shape(
    new_tokens: list[list[int]], requests: int, step_times_s: list[float], length: int
) -> None:
    if len(new_tokens) != requests:
        raise BackendError(
            f"generate() returned {len(new_tokens)} sequences for {requests} requests",
            fix="remove passthrough_kwargs that return several sequences per prompt "
            "(num_return_sequences)",
        )
    produced = len(new_tokens[0]) if new_tokens else 0
    if produced != length or len(step_times_s) != length:
        raise BackendError(
            f"generate() produced {produced} tokens in {len(step_times_s)} timed steps where "
            f"exactly {length} were asked for; the fixed-length contract is broken",
            fix=_LENGTH_FIX,
        )


def _runtime_error(error: RuntimeError) -> BackendError:
    if "out of memory" in str(error).lower():
        return BackendError(
            f"out of memory while generating: {error}",
            fix="lower pytorch.batch_size, input_len or output_len, or use a smaller precision",
        )
    return BackendError(f"generation failed: {error}", fix="see the traceback in error.json")
