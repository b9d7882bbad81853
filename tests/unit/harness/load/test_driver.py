"""The load driver, on a virtual-time loop: every time it records is exact, and instant."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest

from harness.backends.base import Request
from harness.load import Arrival, LoadRun, StreamChunk, StreamFn
from harness.load.driver import drive
from harness.load.testing import FakeServingEngine, VirtualTimeLoop


def play(make: Callable[[VirtualTimeLoop], Coroutine[Any, Any, Any]]) -> Any:
    """Run ``make(loop)`` (a coroutine) to its end on a fresh virtual-time loop."""
    loop = VirtualTimeLoop(start_s=100.0)
    try:
        return loop.run_until_complete(make(loop))
    finally:
        loop.close()


def arrivals(*offsets: float, tokens: int = 4) -> list[Arrival]:
    return [Arrival(Request(index, [1] * (index + 2), tokens), offset)
            for index, offset in enumerate(offsets)]


class Edges:
    """An on_edge that notes each call and the loop time it came at."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []

    def __call__(self, edge: str) -> None:
        self.calls.append((edge, asyncio.get_running_loop().time()))


def drive_on(loop: asyncio.AbstractEventLoop, planned: list[Arrival], stream: StreamFn,
             *, max_concurrency: int | None = None, ramp_up_s: float = 0.0,
             close_offset_s: float | None = None,
             on_edge: Any = None) -> Coroutine[Any, Any, LoadRun]:
    close = close_offset_s if close_offset_s is not None else planned[-1].offset_s
    return drive(planned, stream, max_concurrency=max_concurrency, ramp_up_s=ramp_up_s,
                 close_offset_s=close, on_edge=on_edge or Edges(), clock=loop.time)


# -- sending on time --------------------------------------------------------------------------


def test_each_request_is_sent_at_its_arrival_in_order_and_stamped_per_chunk() -> None:
    engine = FakeServingEngine(prefill_s=0.05, decode_step_s=0.01, tokens_per_chunk=3)
    planned = arrivals(0.0, 0.25, 0.25, 1.5, tokens=7)

    run = play(lambda loop: drive_on(loop, planned, engine.stream))

    assert run.start_s == 100.0
    assert engine.keys == ["llem-serve-0", "llem-serve-1", "llem-serve-2", "llem-serve-3"]
    for served, arrival in zip(run.requests, planned, strict=True):
        due = 100.0 + arrival.offset_s
        assert served.request_id == arrival.request.request_id
        assert served.input_tokens == len(arrival.request.input_ids)
        assert served.max_new_tokens == 7
        assert served.arrival_s == due
        assert served.sent_s == pytest.approx(due, abs=1e-9)
        assert served.chunk_times_s == pytest.approx([due + 0.05, due + 0.06, due + 0.07])
        assert served.chunk_tokens == [3, 3, 1]
        assert served.end_s == pytest.approx(due + 0.07)
        assert served.error is None
    assert run.finished_s == pytest.approx(101.57)


def test_a_late_arrival_is_sent_at_once() -> None:
    # The first request's stream holds the loop 0.3 s (blocking work) past the second's
    # arrival: the second goes out as soon as the loop is free, stamped with its lateness.
    def hog(loop: VirtualTimeLoop) -> StreamFn:
        async def stream(request: Request, key: str) -> AsyncIterator[StreamChunk]:
            if request.request_id == 0:
                loop.advance(0.3)
            yield StreamChunk([1])
        return stream

    run = play(lambda loop: drive_on(loop, arrivals(0.0, 0.1, 0.5), hog(loop)))

    assert [r.sent_s - r.arrival_s for r in run.requests] == pytest.approx([0.0, 0.2, 0.0])


def test_only_outputs_with_tokens_are_stamped_and_engine_reports_are_kept() -> None:
    async def engine(request: Request, key: str) -> AsyncIterator[StreamChunk]:
        yield StreamChunk([], cached_tokens=16, engine_queued_s=0.004)
        await asyncio.sleep(0.1)
        yield StreamChunk([5, 6], cached_tokens=16)
        await asyncio.sleep(0.1)
        yield StreamChunk([], engine_queued_s=0.007)  # a final output with no token

    run = play(lambda loop: drive_on(loop, arrivals(0.0), engine))

    served = run.requests[0]
    assert served.chunk_times_s == pytest.approx([100.1])
    assert served.chunk_tokens == [2]
    assert served.output_tokens == 2
    assert served.cached_input_tokens == 16
    assert served.engine_queued_s == 0.007  # the last one reported
    assert served.end_s == pytest.approx(100.2)


def test_the_fake_engine_reports_what_the_driver_keeps() -> None:
    engine = FakeServingEngine(cached_tokens=0, queued_s=0.02)

    run = play(lambda loop: drive_on(loop, arrivals(0.0, 1.0), engine.stream))

    assert [(r.cached_input_tokens, r.engine_queued_s) for r in run.requests] == [(0, 0.02)] * 2


# -- concurrency ------------------------------------------------------------------------------


def test_max_concurrency_holds_arrivals_back_first_come_first_served() -> None:
    engine = FakeServingEngine(prefill_s=1.0, decode_step_s=0.0, tokens_per_chunk=4)
    planned = arrivals(*[0.1 * index for index in range(10)])

    run = play(lambda loop: drive_on(loop, planned, engine.stream, max_concurrency=3))

    assert engine.max_in_flight == 3
    assert engine.keys == [f"llem-serve-{index}" for index in range(10)]
    sent = [r.sent_s - 100.0 for r in run.requests]
    # Three at a time, each 1 s: a slot frees when the request three before it ends.
    assert sent[:3] == pytest.approx([0.0, 0.1, 0.2])
    assert sent[3:] == pytest.approx([sent[index - 3] + 1.0 for index in range(3, 10)])
    assert all(r.sent_s >= r.arrival_s for r in run.requests)
    assert all(r.output_tokens == 4 and r.error is None for r in run.requests)
    waits = [r.slot_wait_s for r in run.requests]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3:] == pytest.approx([r.sent_s - r.arrival_s for r in run.requests[3:]])


def test_an_arrival_behind_one_waiting_for_a_slot_waits_too() -> None:
    # Two slots, both taken until 1.0: the arrivals at 0.5 and 0.6 wait; at 1.0 both slots
    # free at once, and the one at 0.6 finds a slot free, but it waited behind the other.
    engine = FakeServingEngine(prefill_s=1.0)

    run = play(lambda loop: drive_on(loop, arrivals(0.0, 0.0, 0.5, 0.6), engine.stream,
                                     max_concurrency=2))

    assert [r.sent_s - 100.0 for r in run.requests] == pytest.approx([0.0, 0.0, 1.0, 1.0])
    assert [r.slot_wait_s for r in run.requests] == pytest.approx([0.0, 0.0, 0.5, 0.4])


def test_without_a_limit_every_due_request_is_in_flight() -> None:
    engine = FakeServingEngine(prefill_s=5.0)

    run = play(lambda loop: drive_on(loop, arrivals(*[0.01 * i for i in range(50)]),
                                     engine.stream))

    assert engine.max_in_flight == 50
    assert {r.slot_wait_s for r in run.requests} == {0.0}


def test_a_request_becomes_a_task_only_when_it_is_due() -> None:
    engine = FakeServingEngine(prefill_s=0.5)
    seen: list[int] = []

    def count_tasks(edge: str) -> None:
        seen.append(len(asyncio.all_tasks()))

    planned = arrivals(*[float(index) for index in range(1000)])
    play(lambda loop: drive_on(loop, planned, engine.stream, ramp_up_s=500.25,
                               close_offset_s=500.25, on_edge=count_tasks))

    # Then: the drive itself, its dispatcher and edge timer, and request 500 in flight.
    assert seen == [4, 4]


# -- failures, edges, cancellation ------------------------------------------------------------


def test_a_failing_request_is_recorded_and_the_others_complete() -> None:
    engine = FakeServingEngine(decode_step_s=0.01, fail_ids={1})

    run = play(lambda loop: drive_on(loop, arrivals(0.0, 0.0, 0.0, 0.5), engine.stream))

    failed = run.requests[1]
    assert failed.error == "RuntimeError: engine error in request 1"
    assert failed.end_s is None
    assert failed.chunk_tokens == [1]  # what arrived before the failure stays
    assert [r.output_tokens for r in run.requests] == [4, 1, 4, 4]
    assert [r.error for r in run.requests] == [None, failed.error, None, None]


def test_a_stream_that_fails_before_its_first_output_is_recorded() -> None:
    async def refuse(request: Request, key: str) -> AsyncIterator[StreamChunk]:
        raise ValueError(f"request id {key} is too long")
        yield StreamChunk([])  # an async generator

    run = play(lambda loop: drive_on(loop, arrivals(0.0, 0.2), refuse))

    assert [r.error for r in run.requests] == [
        "ValueError: request id llem-serve-0 is too long",
        "ValueError: request id llem-serve-1 is too long"]
    assert [r.chunk_times_s for r in run.requests] == [[], []]


def test_an_error_without_a_message_is_recorded_by_its_type() -> None:
    async def time_out(request: Request, key: str) -> AsyncIterator[StreamChunk]:
        yield StreamChunk([1])
        raise TimeoutError

    run = play(lambda loop: drive_on(loop, arrivals(0.0), time_out))

    assert run.requests[0].error == "TimeoutError"


def test_the_window_edges_are_called_once_each_on_time_whatever_the_requests_do() -> None:
    edges = Edges()
    engine = FakeServingEngine(prefill_s=0.01)

    run = play(lambda loop: drive_on(loop, arrivals(0.0, 0.1, 0.2), engine.stream,
                                     ramp_up_s=0.05, close_offset_s=3.0, on_edge=edges))

    assert edges.calls == [("open", pytest.approx(100.05)), ("close", pytest.approx(103.0))]
    assert run.measured_edges == (edges.calls[0][1], edges.calls[1][1])
    assert run.window_s == pytest.approx(2.95)
    assert run.finished_s == pytest.approx(100.21)  # the last request's end, before close


def test_the_scheduled_edges_are_kept_beside_the_times_the_callbacks_ran() -> None:
    # A stream holds the loop 0.3 s over the opening edge: the energy is read late, and the
    # run says both when the window was due to open and when it was read.
    edges = Edges()

    def hog(loop: VirtualTimeLoop) -> StreamFn:
        async def stream(request: Request, key: str) -> AsyncIterator[StreamChunk]:
            loop.advance(0.3)
            yield StreamChunk([1])
        return stream

    run = play(lambda loop: drive_on(loop, arrivals(0.0, 1.0), hog(loop), ramp_up_s=0.05,
                                     close_offset_s=2.0, on_edge=edges))

    assert (run.window_open_s, run.window_close_s) == (100.05, 102.0)
    assert run.measured_edges == (pytest.approx(100.3), pytest.approx(102.0))
    assert edges.calls[0] == ("open", run.measured_open_s)


def test_edges_at_the_start_open_then_close() -> None:
    edges = Edges()
    engine = FakeServingEngine()

    play(lambda loop: drive_on(loop, arrivals(0.0), engine.stream, close_offset_s=0.0,
                               on_edge=edges))

    assert edges.calls == [("open", 100.0), ("close", 100.0)]


def test_an_error_at_an_edge_cancels_the_load_and_is_raised() -> None:
    engine = FakeServingEngine(prefill_s=10.0)

    def fail(edge: str) -> None:
        if edge == "close":
            raise OSError("energy counter unreadable")

    async def run(loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[Any]]:
        with pytest.raises(OSError, match="energy counter unreadable"):
            await drive_on(loop, arrivals(0.0, 1.0, 2.0, 30.0), engine.stream,
                           close_offset_s=2.5, on_edge=fail)
        return [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]

    assert play(run) == []
    assert engine.in_flight == 0
    assert len(engine.keys) == 3  # the fourth request was never sent


def test_cancelling_the_drive_cancels_every_request_and_leaves_no_task() -> None:
    engine = FakeServingEngine(prefill_s=1.0, decode_step_s=1.0)

    async def run(loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[Any]]:
        load = asyncio.ensure_future(
            drive_on(loop, arrivals(*[0.2 * i for i in range(20)]), engine.stream))
        await asyncio.sleep(1.1)
        assert engine.in_flight == 6
        load.cancel()
        with pytest.raises(asyncio.CancelledError):
            await load
        return [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]

    assert play(run) == []
    assert engine.in_flight == 0


# -- the garbage collector --------------------------------------------------------------------


def test_the_heap_is_frozen_while_the_load_runs_and_thawed_after() -> None:
    frozen: list[int] = []
    gc.unfreeze()

    play(lambda loop: drive_on(loop, arrivals(0.0, 1.0), FakeServingEngine(),
                               on_edge=lambda edge: frozen.append(gc.get_freeze_count())))

    assert frozen[0] > 0
    assert gc.get_freeze_count() == 0


def test_a_heap_frozen_before_the_load_stays_frozen() -> None:
    gc.freeze()
    try:
        play(lambda loop: drive_on(loop, arrivals(0.0), FakeServingEngine()))
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(("planned", "options", "message"), [
    (arrivals(0.0), {"ramp_up_s": 2.0, "close_offset_s": 1.0}, "close .* before it opens"),
    (arrivals(0.0), {"ramp_up_s": -1.0, "close_offset_s": 1.0}, "ramp_up_s must not be"),
    (arrivals(0.0), {"max_concurrency": 0}, "max_concurrency must be at least 1"),
    (arrivals(0.0, 2.0, 1.0), {}, "in time order: request 2 at 1.0 s follows request 1"),
    (arrivals(-1.0), {}, "must not be negative"),
    ([*arrivals(0.0), *arrivals(1.0)], {}, "request id 0 arrives twice"),
])
def test_bad_input_is_refused_before_anything_is_sent(
        planned: list[Arrival], options: dict[str, Any], message: str) -> None:
    engine = FakeServingEngine()
    options = {"max_concurrency": None, "ramp_up_s": 0.0, "close_offset_s": 5.0, **options}

    with pytest.raises(ValueError, match=message):
        play(lambda loop: drive(planned, engine.stream, on_edge=Edges(), clock=loop.time,
                                **options))
    assert engine.keys == []


# -- the real clock ---------------------------------------------------------------------------


def test_on_a_real_loop_no_request_is_sent_before_it_arrives() -> None:
    engine = FakeServingEngine(prefill_s=0.001, decode_step_s=0.001)
    planned = arrivals(*[0.002 * index for index in range(20)])

    run = asyncio.run(drive(planned, engine.stream, max_concurrency=None, ramp_up_s=0.01,
                            close_offset_s=0.03, on_edge=lambda edge: None))

    # perf_counter and the loop share the monotonic clock; the loop may wake 1 ns early.
    assert all(r.sent_s >= r.arrival_s - 1e-6 for r in run.requests)
    assert all(r.end_s is not None and r.end_s > r.sent_s for r in run.requests)
    assert run.window_open_s >= run.start_s + 0.01 - 1e-6
    assert run.window_close_s >= run.start_s + 0.03 - 1e-6
