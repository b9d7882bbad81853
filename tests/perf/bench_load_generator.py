"""Benchmark: the serving-mode load driver against a stub engine, at 1 to 1000 requests/s.

For each requested rate the driver sends Poisson arrivals (seeded) through a
:class:`FakeServingEngine` on a real event loop and the real clock, and the bench prints:

- arrival error: ``sent_s - arrival_s`` (ms): how late the driver hands a request to the
  engine (p50, p99, max); no ``max_concurrency``, so this is the driver's own lateness;
- send rate: the rate the schedule drew over its span (``sched/req``, sampling noise of a
  Poisson draw, not the driver) and the rate the driver achieved over the same requests
  (``sent/sched``: first to last send against first to last arrival);
- CPU: this process's CPU time per request (us) and as a share of the wall time (one core =
  100 %), the stub engine included (it does no work but sleep).

Two stub engines: ``immediate`` (one output, as soon as the loop runs it: the driver alone)
and ``streaming`` (first output after 20 ms, then one token every 10 ms, 16 tokens: a loop
that also stamps 16 outputs per request, as with a real engine streaming token by token).
Beside them, ``bare loop``: a coroutine that only sleeps until each arrival and reads the
clock, the floor any asyncio client has on this machine (the loop's timer wakes up to 1 ms
late: epoll counts whole milliseconds, rounded up); and ``bare, poll``, the same ending each
sleep 1.1 ms early and polling the loop until due: what polling would buy, and cost.

    .venv/bin/python tests/perf/bench_load_generator.py [immediate|streaming|all]
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import numpy as np

from harness.backends.base import Request
from harness.load import Arrival
from harness.load.arrivals import arrival_offsets
from harness.load.driver import drive
from harness.load.testing import FakeServingEngine

CASES = ((1.0, 20), (10.0, 200), (100.0, 2000), (1000.0, 5000))
"""(requested rate in requests/s, requests): each case runs about 5-20 s."""

ENGINES = {
    "immediate": FakeServingEngine(prefill_s=0.0, decode_step_s=0.0, tokens_per_chunk=16),
    "streaming": FakeServingEngine(prefill_s=0.020, decode_step_s=0.010, tokens_per_chunk=1),
}
OUTPUT_TOKENS, SEED = 16, 0
POLL_S = 0.0011
"""The bare loop's polling variant ends each sleep this early (s): epoll's 1 ms and a margin."""


Sample = tuple[list[float], list[float], float, float]
"""Due times, send times (s), CPU s and wall s of one case."""


def arrivals_at(rate: float, count: int) -> list[Arrival]:
    """``count`` seeded Poisson arrivals at ``rate``."""
    offsets = arrival_offsets("poisson", rate, count=count, seed=SEED)
    return [Arrival(Request(index, [1] * 32, OUTPUT_TOKENS), offset)
            for index, offset in enumerate(offsets)]


def driven(engine: FakeServingEngine, arrivals: list[Arrival]) -> Sample:
    """Drive ``arrivals`` through ``engine``."""
    cpu_s, wall_s = time.process_time(), time.perf_counter()
    run = asyncio.run(drive(arrivals, engine.stream, max_concurrency=None, ramp_up_s=0.0,
                            close_offset_s=arrivals[-1].offset_s, on_edge=lambda edge: None))
    cpu_s, wall_s = time.process_time() - cpu_s, time.perf_counter() - wall_s
    failed = [r.error for r in run.requests if r.error is not None]
    if failed:
        raise RuntimeError(f"{len(failed)} requests failed, e.g. {failed[0]}")
    return ([r.arrival_s for r in run.requests], [r.sent_s for r in run.requests], cpu_s,
            wall_s)


def bare(arrivals: list[Arrival], poll_s: float = 0.0) -> Sample:
    """Only sleep until each arrival on the loop and read the clock: the floor.

    With ``poll_s``, the sleep ends that much early and the loop is polled until due (the
    alternative the driver does not take: it spends CPU for the last millisecond).
    """
    async def sleep_through() -> tuple[list[float], list[float]]:
        start_s = time.perf_counter()
        due, woke = [], []
        for arrival in arrivals:
            due.append(start_s + arrival.offset_s)
            delay_s = due[-1] - time.perf_counter() - poll_s
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            while time.perf_counter() < due[-1]:
                await asyncio.sleep(0)
            woke.append(time.perf_counter())
        return due, woke

    cpu_s, wall_s = time.process_time(), time.perf_counter()
    due, woke = asyncio.run(sleep_through())
    return due, woke, time.process_time() - cpu_s, time.perf_counter() - wall_s


def row(name: str, rate: float, sample: Sample) -> str:
    """One line of the table."""
    due, sent, cpu_s, wall_s = sample
    late_ms = 1e3 * (np.array(sent) - np.array(due))
    scheduled_s, sent_s = due[-1] - due[0], sent[-1] - sent[0]
    return (f"{name:<11} {rate:>6.0f} {len(due):>5} {np.median(late_ms):>8.3f} "
            f"{np.percentile(late_ms, 99):>8.3f} {late_ms.max():>8.3f} "
            f"{(len(due) - 1) / scheduled_s / rate:>9.3f} {scheduled_s / sent_s:>10.4f} "
            f"{1e6 * cpu_s / len(due):>9.0f} {100 * cpu_s / wall_s:>8.1f}")


def main() -> None:
    """Print the table for the chosen stub engines, each rate beside the bare loop."""
    chosen = sys.argv[1] if len(sys.argv) > 1 else "all"
    names = list(ENGINES) if chosen == "all" else [chosen]
    print(f"cores: {os.cpu_count()}, load average: "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}; Poisson arrivals, seed {SEED}")
    print(f"{'client':<11} {'req/s':>6} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'sched/req':>9} {'sent/sched':>10} {'CPU us/r':>9} {'CPU %':>8}")
    for rate, count in CASES:
        arrivals = arrivals_at(rate, count)
        print(row("bare loop", rate, bare(arrivals)), flush=True)
        print(row("bare, poll", rate, bare(arrivals, POLL_S)), flush=True)
        for name in names:
            print(row(name, rate, driven(ENGINES[name], arrivals)), flush=True)


if __name__ == "__main__":
    main()
