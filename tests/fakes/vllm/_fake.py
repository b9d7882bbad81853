"""What the fake's modules share: the record of calls, switchable faults and the fake model."""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Call:
    """One call into the fake: what was called (``LLM``, ``LLM.generate``, ...) and how."""

    target: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


CALLS: list[Call] = []
"""Every call llem made into the fake, in order (fresh for each import of the package)."""


def record(target: str, *args: Any, **kwargs: Any) -> None:
    CALLS.append(Call(target, args, dict(kwargs)))


def calls(target: str) -> list[Call]:
    """The recorded calls of one target."""
    return [call for call in CALLS if call.target == target]


class Faults:
    """Misbehaviours a test can switch on, to check that llem notices them."""

    drop_last_token = False
    """Every request ends one token short (as a stop string or a context limit would do)."""

    prefix_caching_ignores_flag = False
    """The engine caches prefixes even with ``enable_prefix_caching=False``, as an engine that
    ignored the argument would; what it served from cache is still reported."""


STEP_S = 0.002
"""Wall time of one fake engine step, so that generation takes time as it does on a GPU."""

EOS_EVERY = 5
"""Every fifth planned token is the model's EOS: without ignore_eos a request stops there."""


@dataclass(frozen=True)
class FakeModel:
    """A deterministic "model": the next token depends on the prompt and the position only."""

    vocab_size: int
    eos_token_id: int
    max_model_len: int
    dtype: str

    @classmethod
    def from_directory(cls, model: str) -> FakeModel:
        path = Path(model)
        if not (path / "config.json").is_file():
            # Real vLLM would try the hub here; the fake never downloads.
            raise OSError(f"{model} is not a local model directory with a config.json")
        config = json.loads((path / "config.json").read_text())
        eos = config.get("eos_token_id", 0)
        return cls(
            vocab_size=int(config["vocab_size"]),
            eos_token_id=int(eos[0] if isinstance(eos, list) else eos),
            max_model_len=int(config.get("max_position_embeddings", 2048)),
            dtype=str(config.get("torch_dtype") or config.get("dtype") or "float32"),
        )

    def planned_token(self, prompt_ids: list[int], position: int) -> int:
        if position % EOS_EVERY == EOS_EVERY - 1:
            return self.eos_token_id
        token = (sum(prompt_ids) * 31 + len(prompt_ids) * 7 + position * 13 + 3) % self.vocab_size
        return token if token != self.eos_token_id else (token + 1) % self.vocab_size

    def continuation(self, prompt: Any, params: Any) -> tuple[list[int], str]:
        """The generated ids and the finish reason ("stop" at EOS, else "length")."""
        prompt_ids = self.check_prompt(prompt)
        room = self.max_model_len - len(prompt_ids)
        limit = room if params.max_tokens is None else min(params.max_tokens, room)
        ids: list[int] = []
        for position in range(limit):
            token = self.planned_token(prompt_ids, position)
            if token == self.eos_token_id and not params.ignore_eos:
                if position >= params.min_tokens:
                    ids.append(token)
                    return ids, "stop"
                token = (token + 1) % self.vocab_size  # min_tokens masks EOS: the next best
            ids.append(token)
        if Faults.drop_last_token:
            ids = ids[:-1]
        return ids, "length"

    def check_prompt(self, prompt: Any) -> list[int]:
        if not isinstance(prompt, dict) or "prompt_token_ids" not in prompt:
            raise TypeError(f"the fake takes TokensPrompt dicts only, got {prompt!r}")
        ids = list(prompt["prompt_token_ids"])
        if not ids:
            raise ValueError("The decoder prompt cannot be empty")
        for token in ids:
            if not 0 <= token < self.vocab_size:
                raise ValueError(f"Token id {token} is out of vocabulary")
        if len(ids) >= self.max_model_len:
            raise ValueError(
                f"The decoder prompt (length {len(ids)}) is longer than the maximum model "
                f"length of {self.max_model_len}."
            )
        return ids


class PrefixCache:
    """vLLM's automatic prefix caching (the V1 ``KVCacheManager``), as far as it decides how
    many prompt tokens of a request are served from cache.

    KV blocks hold ``block_size`` tokens; a full block is known by a hash chained with its
    parent's, so it matches only behind the same whole prefix. A request's hit is its longest
    run of leading full blocks already cached, within ``prompt length - 1`` tokens: vLLM always
    recomputes the last prompt token to get its logits, and hits are whole blocks. After a
    request runs, every full block of its prompt and output is cached. Requests are looked up
    in submission order, each seeing the blocks of the requests before it (earlier calls
    included). Nothing is evicted: the fake's made-up block pool never fills.

    Args:
        block_size: tokens per KV block (the engine's resolved ``block_size``).
        enabled: the engine's resolved ``enable_prefix_caching``.
    """

    def __init__(self, block_size: int, enabled: bool) -> None:
        self.block_size = block_size
        self.enabled = enabled
        self._blocks: set[bytes] = set()

    def lookup(self, prompt_ids: list[int]) -> int:
        """Prompt tokens served from cache: ``RequestOutput.num_cached_tokens``."""
        if not (self.enabled or Faults.prefix_caching_ignores_flag):
            return 0
        hits = 0
        for block in self._hashes(prompt_ids[: len(prompt_ids) - 1]):
            if block not in self._blocks:
                break
            hits += 1
        return hits * self.block_size

    def insert(self, token_ids: list[int]) -> None:
        """Cache every full block of a finished request's tokens (prompt and output)."""
        self._blocks.update(self._hashes(token_ids))

    def _hashes(self, token_ids: list[int]) -> list[bytes]:
        hashes: list[bytes] = []
        parent = b""
        for start in range(0, len(token_ids) - self.block_size + 1, self.block_size):
            block = token_ids[start : start + self.block_size]
            parent = hashlib.sha256(parent + repr(block).encode()).digest()
            hashes.append(parent)
        return hashes


def recorded(target: str) -> Any:
    """Decorate a fake method so that each call is recorded (its first argument, self or cls,
    left out); the signature stays the method's own (``functools.wraps``)."""

    def decorate(function: Any) -> Any:
        if inspect.isasyncgenfunction(function):

            @functools.wraps(function)
            async def stream(first: Any, *args: Any, **kwargs: Any) -> Any:
                record(target, *args, **kwargs)
                async for item in function(first, *args, **kwargs):
                    yield item

            return stream

        @functools.wraps(function)
        def call(first: Any, *args: Any, **kwargs: Any) -> Any:
            record(target, *args, **kwargs)
            return function(first, *args, **kwargs)

        return call

    return decorate

