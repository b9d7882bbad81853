"""Fakes for serving mode: an event loop on virtual time, and an engine that streams on it.

:class:`VirtualTimeLoop` is an asyncio loop whose clock jumps to the next timer whenever
nothing is ready, so a load of minutes plays in milliseconds and every time it reads is exact.
:class:`FakeServingEngine` streams each request as an engine does (a first output after a
prefill time, then one output per decode step until ``max_new_tokens``) and counts what a test
asks about: requests in flight, the most at once, the keys it was given.

This module ships in the package and never imports pytest.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass, field

from harness.backends.base import Request
from harness.load import StreamChunk


class _SkippingSelector(selectors.SelectSelector):
    """A selector that, instead of blocking until a timer is due, moves the clock there."""

    def __init__(self, advance: Callable[[float], None]) -> None:
        super().__init__()
        self._advance = advance

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # no timer at all: only another thread can wake the loop
            return super().select(None)
        self._advance(timeout)
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose time moves only while every task waits for a timer.

    When no callback is ready, the loop jumps its clock to the earliest timer instead of
    sleeping: ``await asyncio.sleep(0.5)`` returns at once, with ``loop.time()`` exactly 0.5
    later, and code that runs between two awaits takes no time at all. Made for code that
    waits on timers (sleeps, timeouts); a wait for another thread or a socket still blocks
    in real time when no timer is set.

    Args:
        start_s: the time the loop reads before anything has run.

    """

    def __init__(self, start_s: float = 0.0) -> None:
        self._now_s = start_s
        super().__init__(_SkippingSelector(self.advance))

    def time(self) -> float:
        """The loop's virtual time (s)."""
        return self._now_s

    def advance(self, dt_s: float) -> None:
        """Move the clock forward ``dt_s`` seconds, as work that blocks the loop would."""
        if dt_s < 0:
            raise ValueError(f"a clock cannot go back (dt_s={dt_s})")
        self._now_s += dt_s


@dataclass
class FakeServingEngine:
    """An engine that streams each request on the loop's clock, as a continuous batcher does.

    A request's first output comes ``prefill_s`` after it is submitted; each later one
    ``decode_step_s`` after the previous one; each carries ``tokens_per_chunk`` tokens (the
    last one what is left) until ``max_new_tokens`` were sent. The engine does not slow down
    under load. Like vLLM, it refuses a key that is already in flight (``ValueError``).

    Attributes:
        prefill_s: time to the first output (s).
        decode_step_s: time between outputs (s).
        tokens_per_chunk: tokens per output.
        fail_ids: request ids that fail (``RuntimeError``) after their first output.
        cached_tokens: reported with every output as the request's cached prompt tokens.
        queued_s: reported with the first output as the request's engine queueing time.
        keys: every key submitted, in order.
        in_flight: requests submitted and not yet ended.
        max_in_flight: the most requests in flight at once.

    """

    prefill_s: float = 0.0
    decode_step_s: float = 0.0
    tokens_per_chunk: int = 1
    fail_ids: Collection[int] = ()
    cached_tokens: int | None = None
    queued_s: float | None = None
    keys: list[str] = field(default_factory=list, init=False)
    in_flight: int = field(default=0, init=False)
    max_in_flight: int = field(default=0, init=False)
    _live: set[str] = field(default_factory=set, init=False, repr=False)

    async def stream(self, request: Request, key: str) -> AsyncIterator[StreamChunk]:
        """Submit ``request`` under ``key`` and yield its outputs (a :data:`StreamFn`)."""
        if key in self._live:
            raise ValueError(f"request id {key} is already running")
        self.keys.append(key)
        self._live.add(key)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            async for chunk in self._outputs(request):
                yield chunk
        finally:
            self.in_flight -= 1
            self._live.discard(key)

    async def _outputs(self, request: Request) -> AsyncIterator[StreamChunk]:
        sent, delay_s = 0, self.prefill_s
        while sent < request.max_new_tokens:
            await asyncio.sleep(delay_s)
            size = min(self.tokens_per_chunk, request.max_new_tokens - sent)
            yield StreamChunk(list(range(sent, sent + size)), self.cached_tokens,
                              self.queued_s if sent == 0 else None)
            sent, delay_s = sent + size, self.decode_step_s
            if request.request_id in self.fail_ids:
                raise RuntimeError(f"engine error in request {request.request_id}")


__all__ = ["FakeServingEngine", "VirtualTimeLoop"]
