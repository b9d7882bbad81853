"""Serving mode: requests that arrive over time, each streamed, measured in a steady window.

The pieces, each usable alone:

- :mod:`harness.load.arrivals`: when each request arrives (Poisson, gamma, constant; seeded)
  and, for synthetic workloads, how long each one is.
- :mod:`harness.load.driver`: sends each request at its arrival time through a backend's
  stream function (at most ``max_concurrency`` in flight), stamps every chunk, and calls back
  at the steady-state window's edges so the harness can read its energy counters there.
- :mod:`harness.load.metrics`: per-request and per-run serving figures from what the driver
  recorded.
- :mod:`harness.load.testing`: an event loop on virtual time and a fake streaming engine, to
  test the driver (and what is built on it) exactly and instantly.

The types they share are here. Times are ``time.perf_counter()`` seconds, the harness's clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from harness.backends.base import Request, StreamChunk, StreamFn


@dataclass(frozen=True)
class Arrival:
    """One request and when it is due.

    Attributes:
        request: the request (its ``max_new_tokens`` is generated exactly).
        offset_s: seconds after the load's start at which it arrives (non-decreasing).
    """

    request: Request
    offset_s: float


@dataclass
class ServedRequest:
    """What happened to one request in serving mode.

    Attributes:
        request_id: the request's id.
        input_tokens: prompt length.
        max_new_tokens: tokens asked for.
        arrival_s: when it was due (the load's start + its offset).
        sent_s: when it was handed to the engine (later than ``arrival_s`` when it waited for
            a ``max_concurrency`` slot, or the driver was late).
        slot_wait_s: how long it waited in the client for a ``max_concurrency`` slot (s): from
            its arrival until it got one, when none was free for it then (it found every slot
            taken, or an earlier arrival still waiting); 0 otherwise. ``sent_s - arrival_s -
            slot_wait_s`` is the driver's own lateness.
        chunk_times_s: when each output carrying tokens reached the driver, in order.
        chunk_tokens: tokens in each of those outputs.
        end_s: when its stream ended (None if it failed).
        error: why it failed (None: it completed).
        cached_input_tokens: prompt tokens served from a cross-request cache (None: unknown).
        engine_queued_s: the engine's own report of its time in the waiting queue (None:
            not reported).
    """

    request_id: int
    input_tokens: int
    max_new_tokens: int
    arrival_s: float
    sent_s: float
    slot_wait_s: float = 0.0
    chunk_times_s: list[float] = field(default_factory=list)
    chunk_tokens: list[int] = field(default_factory=list)
    end_s: float | None = None
    error: str | None = None
    cached_input_tokens: int | None = None
    engine_queued_s: float | None = None

    @property
    def output_tokens(self) -> int:
        """Tokens received."""
        return sum(self.chunk_tokens)

    @property
    def first_token_s(self) -> float | None:
        """When its first token arrived (None: none did)."""
        return self.chunk_times_s[0] if self.chunk_times_s else None


@dataclass
class LoadRun:
    """One serving run as the driver recorded it.

    Attributes:
        start_s: the load's start (offset 0).
        window_open_s: the steady-state window's opening edge (start + ramp-up).
        window_close_s: its closing edge (the last arrival, or start + duration): the drain
            that follows is outside it. Both edges are the same sums as ``arrival_s`` (start
            + an offset), not clock readings taken when the edge callback ran, so an arrival
            on an edge is placed exactly: the window holds every instant t with
            ``window_open_s <= t < window_close_s``, and in count mode the last arrival,
            on the closing edge, belongs to the drain.
        finished_s: when the last request ended (the drain's end).
        requests: every request, in arrival order.
        measured_open_s: the clock when the opening edge's callback ran, i.e. when the energy
            counters were read (a little after ``window_open_s``: the loop's timer lateness);
            None: not recorded, the scheduled edge stands for it.
        measured_close_s: the same for the closing edge.

    Arrivals are scheduled times and are placed against the scheduled edges; everything the
    clock stamps (tokens, sends, ends) is placed against the measured edges, the instants the
    window's energy was read between, so energy and work cover the same interval.
    """

    start_s: float
    window_open_s: float
    window_close_s: float
    finished_s: float
    requests: list[ServedRequest]
    measured_open_s: float | None = None
    measured_close_s: float | None = None

    @property
    def window_s(self) -> float:
        """The scheduled window's length (s)."""
        return self.window_close_s - self.window_open_s

    @property
    def measured_edges(self) -> tuple[float, float]:
        """The edges the energy was read at (the scheduled ones where not recorded)."""
        opened = self.window_open_s if self.measured_open_s is None else self.measured_open_s
        closed = self.window_close_s if self.measured_close_s is None else self.measured_close_s
        return opened, closed

    @property
    def measured_window_s(self) -> float:
        """Length of the interval the energy covers (s)."""
        opened, closed = self.measured_edges
        return closed - opened


WindowEdge = Callable[[str], None]
"""Called on the event loop at ``"open"`` and ``"close"``: where the harness reads its energy
counters and marks the phases (``measure``, ``drain``)."""


__all__ = ["Arrival", "LoadRun", "ServedRequest", "StreamChunk", "StreamFn", "WindowEdge"]
