"""Send requests at their arrival times through a stream function, and record what came back.

:func:`drive` is the client side of serving mode. It runs on the engine's event loop and:

- sends each request at ``start + offset`` (it sleeps on the loop until then; a request whose
  time has passed is sent at once), in arrival order, each as its own task, made only when
  the request is due, so a long load never holds more live requests than are in flight;
- with ``max_concurrency``, holds a due request back until one in flight ends (first come,
  first served), and records that wait (``slot_wait_s``);
- stamps every output that carries tokens with the clock as it arrives;
- records a failing request's error and goes on with the others;
- calls ``on_edge("open")`` at ``start + ramp_up_s`` and ``on_edge("close")`` at
  ``start + close_offset_s``, from a timer of its own that no request can hold up;
- returns when every request has ended and both edges have been called.

Cancelling it (or an error in ``on_edge``) cancels every request in flight and waits for them
to end before it raises.

While it runs, the garbage collector's heap is frozen (``gc.freeze()``), so that no full
collection over the model and the engine stops the loop during the load.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from harness.load import Arrival, LoadRun, ServedRequest, StreamFn, WindowEdge

Clock = Callable[[], float]
"""A monotonic clock in seconds (the harness's is ``time.perf_counter``)."""

KEY_PREFIX = "llem-serve-"
"""Each request goes to the engine under the key ``KEY_PREFIX + str(request_id)``."""


async def drive(
    arrivals: Sequence[Arrival],
    stream: StreamFn,
    *,
    max_concurrency: int | None,
    ramp_up_s: float,
    close_offset_s: float,
    on_edge: WindowEdge,
    clock: Clock = time.perf_counter,
) -> LoadRun:
    """Send ``arrivals`` through ``stream`` at their times; return what each request did.

    Args:
        arrivals: the requests and their offsets (s), offsets non-decreasing, ids unique.
        stream: submits one request under a key and yields its outputs.
        max_concurrency: at most this many requests in flight (None: no limit).
        ramp_up_s: the window opens this long after the start.
        close_offset_s: the window closes this long after the start (>= ``ramp_up_s``).
        on_edge: called with ``"open"``, then ``"close"``, on the loop, at the window's edges.
        clock: the clock of every recorded time; the loop's own clock times the sleeps.

    Returns:
        The run: its start, the window's scheduled edges (start + ``ramp_up_s``, start +
        ``close_offset_s``) and the clock when ``on_edge`` was called at each (the measured
        edges), when the last request ended, and every request in arrival order.

    Raises:
        ValueError: offsets that go back or are negative, a request id twice, a
            ``max_concurrency`` below 1, a negative ``ramp_up_s``, or a window that closes
            before it opens.
        asyncio.CancelledError: the drive was cancelled (every request in flight was
            cancelled and has ended).

    """
    _check(arrivals, max_concurrency, ramp_up_s, close_offset_s)
    state = _Driver(stream, clock, max_concurrency, len(arrivals))
    with _frozen_heap():
        state.finished_s = state.start_s = clock()
        edges = asyncio.create_task(state.call_edges(ramp_up_s, close_offset_s, on_edge))
        dispatch = asyncio.create_task(state.dispatch(arrivals))
        try:
            await _until_done([edges, dispatch], state.in_flight)
        except BaseException:
            await _cancel([edges, dispatch, *state.in_flight])
            raise
    opened_s, closed_s = edges.result()
    return LoadRun(start_s=state.start_s, window_open_s=state.start_s + ramp_up_s,
                   window_close_s=state.start_s + close_offset_s, measured_open_s=opened_s,
                   measured_close_s=closed_s,
                   finished_s=state.finished_s, requests=state.served())


@contextlib.contextmanager
def _frozen_heap() -> Iterator[None]:
    """Keep the garbage collector off the heap that exists now, until the block ends.

    A full collection scans the whole heap (model, engine, harness) and stops the loop while
    it does: 0.3 s seen with the harness alone on a 100 req/s load. Frozen, the heap is not
    scanned; collections see only what the load makes. A heap frozen before (by the engine,
    say) stays frozen.
    """
    frozen_before = gc.get_freeze_count()
    gc.freeze()
    try:
        yield
    finally:
        if not frozen_before:
            gc.unfreeze()


def _check(arrivals: Sequence[Arrival], max_concurrency: int | None, ramp_up_s: float,
           close_offset_s: float) -> None:
    if max_concurrency is not None and max_concurrency < 1:
        raise ValueError(f"max_concurrency must be at least 1 (or None: no limit), got "
                         f"{max_concurrency}")
    if ramp_up_s < 0:
        raise ValueError(f"ramp_up_s must not be negative, got {ramp_up_s}")
    if close_offset_s < ramp_up_s:
        raise ValueError(f"the window would close (at {close_offset_s} s) before it opens (at "
                         f"ramp_up_s {ramp_up_s} s): close it at or after the ramp-up")
    if arrivals and arrivals[0].offset_s < 0:
        raise ValueError(f"arrival offsets must not be negative, got {arrivals[0].offset_s}")
    for earlier, later in pairwise(arrivals):
        if later.offset_s < earlier.offset_s:
            raise ValueError(f"arrivals must be in time order: request "
                             f"{later.request.request_id} at {later.offset_s} s follows "
                             f"request {earlier.request.request_id} at {earlier.offset_s} s")
    twice = [request_id for request_id, times in
             Counter(arrival.request.request_id for arrival in arrivals).items() if times > 1]
    if twice:
        raise ValueError(f"request id {twice[0]} arrives twice; every request needs its own id "
                         "(it keys the request in the engine)")


@dataclass
class _Driver:
    """The state of one drive: the records so far and the requests in flight."""

    stream: StreamFn
    clock: Clock
    max_concurrency: int | None
    count: int
    start_s: float = 0.0
    finished_s: float = 0.0
    in_flight: set[asyncio.Task[None]] = field(default_factory=set)
    records: list[ServedRequest | None] = field(default_factory=list)
    slots: asyncio.Semaphore | None = None

    def __post_init__(self) -> None:
        self.records = [None] * self.count
        if self.max_concurrency is not None:
            self.slots = asyncio.Semaphore(self.max_concurrency)

    async def sleep_until(self, due_s: float) -> None:
        """Sleep on the loop until the clock reads ``due_s`` (return at once if it has)."""
        delay_s = due_s - self.clock()
        if delay_s > 0:
            await asyncio.sleep(delay_s)

    async def call_edges(self, ramp_up_s: float, close_offset_s: float,
                         on_edge: WindowEdge) -> tuple[float, float]:
        """Open and close the window on time; return when each edge was called."""
        await self.sleep_until(self.start_s + ramp_up_s)
        opened_s = self.clock()
        on_edge("open")
        await self.sleep_until(self.start_s + close_offset_s)
        closed_s = self.clock()
        on_edge("close")
        return opened_s, closed_s

    async def dispatch(self, arrivals: Sequence[Arrival]) -> None:
        """Start each request's task when it is due (and, with a limit, a slot is free)."""
        held_until_s = -math.inf  # when the last arrival held back for a slot got one
        for index, arrival in enumerate(arrivals):
            due_s = self.start_s + arrival.offset_s
            await self.sleep_until(due_s)
            slot_wait_s = 0.0
            if self.slots is not None:
                held = self.slots.locked() or held_until_s > due_s
                await self.slots.acquire()  # released by the request when it ends
                if held:
                    held_until_s = self.clock()
                    slot_wait_s = held_until_s - due_s
            task = asyncio.create_task(self.serve(index, arrival, due_s, slot_wait_s))
            self.in_flight.add(task)
            task.add_done_callback(self.in_flight.discard)

    async def serve(self, index: int, arrival: Arrival, arrival_s: float,
                    slot_wait_s: float) -> None:
        """Send one request, record its outputs as they come, and its end or its error."""
        request = arrival.request
        record = ServedRequest(request_id=request.request_id,
                               input_tokens=len(request.input_ids),
                               max_new_tokens=request.max_new_tokens, arrival_s=arrival_s,
                               sent_s=self.clock(), slot_wait_s=slot_wait_s)
        self.records[index] = record
        try:
            async for chunk in self.stream(request, f"{KEY_PREFIX}{request.request_id}"):
                now_s = self.clock()
                if chunk.token_ids:
                    record.chunk_times_s.append(now_s)
                    record.chunk_tokens.append(len(chunk.token_ids))
                if chunk.cached_tokens is not None:
                    record.cached_input_tokens = chunk.cached_tokens
                if chunk.engine_queued_s is not None:
                    record.engine_queued_s = chunk.engine_queued_s
            record.end_s = self.clock()
        except Exception as error:  # noqa: BLE001 - one failed request never ends the others
            record.error = ": ".join(filter(None, (type(error).__name__, str(error))))
        finally:
            self.finished_s = max(self.finished_s, self.clock())
            if self.slots is not None:
                self.slots.release()

    def served(self) -> list[ServedRequest]:
        """Every request's record, in arrival order (all were sent once dispatch is done)."""
        return [record for record in self.records if record is not None]


async def _until_done(fixed: Sequence[asyncio.Future[Any]],
                      in_flight: set[asyncio.Task[None]]) -> None:
    """Wait for ``fixed`` and every task ever in ``in_flight``; raise the first failure."""
    while True:
        tasks = [*fixed, *in_flight]
        for task in tasks:
            if task.done():
                task.result()  # a failed edge or dispatch raises here
        pending = [task for task in tasks if not task.done()]
        if not pending:
            return
        # New requests may start meanwhile: they are picked up on the next round.
        await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)


async def _cancel(tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` and wait until each has ended."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


__all__ = ["KEY_PREFIX", "Clock", "drive"]
