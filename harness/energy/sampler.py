"""A background thread that samples every GPU on a fixed schedule.

Ticks fall on ``start + k * interval`` rather than ``sleep(interval)`` after each read, so the
time series does not drift by the cost of the reads; a tick that is missed (the machine was too
busy) is skipped, not made up for with a burst. Each tick is labelled with the current phase
(baseline, load, warmup, measure, ...) so the time series shows what the GPU was doing.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

from harness.energy.device import GpuDevice, GpuSample

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
SampleSink = Callable[[str, list[GpuSample]], None]

MAX_KEPT_ERRORS = 100
"""Errors kept with their exception; later ones are only counted (``error_count``)."""


@dataclass(frozen=True)
class SampleBatch:
    """One tick: a sample of every GPU that could be read.

    Attributes:
        phase: the phase label current when the tick was taken.
        t_s: when the tick began (sampler clock, s).
        samples: one sample per GPU read successfully, in GPU order.

    """

    phase: str
    t_s: float
    samples: tuple[GpuSample, ...]


@dataclass(frozen=True)
class SamplerError:
    """A read or sink call that failed inside the sampler.

    Attributes:
        t_s: when it failed (sampler clock, s).
        gpu_index: the GPU being read, or None when the sink failed.
        error: the exception.

    """

    t_s: float
    gpu_index: int | None
    error: Exception


def next_deadline_s(start_s: float, interval_s: float, now_s: float) -> float:
    """Return the first tick of the schedule ``start_s + k * interval_s`` (k >= 1) after now.

    Ticks already missed are skipped, so a late reader resumes on the grid instead of bursting.

    Args:
        start_s: when the schedule started (s).
        interval_s: time between ticks (s).
        now_s: the current time (s).

    """
    ticks_done = math.floor((now_s - start_s) / interval_s) + 1
    return start_s + max(ticks_done, 1) * interval_s


class PowerSampler:
    """Sample every GPU every ``interval_ms`` in a daemon thread and keep the samples in memory.

    Args:
        gpus: the GPUs to sample; with none, :meth:`start` starts no thread.
        interval_ms: time between ticks (ms).
        clock: returns seconds; the same clock the window edges are read with.
        sink: called as ``sink(phase, samples)`` after every tick (for the time-series file).
        phase: label of the ticks taken before the first :meth:`set_phase`.

    """

    def __init__(
        self,
        gpus: Sequence[GpuDevice],
        interval_ms: float,
        clock: Clock = time.perf_counter,
        sink: SampleSink | None = None,
        *,
        phase: str = "start",
    ) -> None:
        if interval_ms <= 0:
            raise ValueError(f"interval_ms must be positive, got {interval_ms}")
        self.gpus = gpus
        self.interval_s = interval_ms / 1000.0
        self.clock = clock
        self._sink = sink
        self._phase = phase
        self._batches: list[SampleBatch] = []
        self._errors: list[SamplerError] = []
        self._error_times_s: dict[int | None, list[float]] = {}
        self.error_count = 0
        self._data_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def read_lock(self) -> threading.Lock:
        """Held while a tick reads the GPUs and publishes what it read.

        A reader that takes it too (the energy meter's marks) gets timestamps that order the
        same way as the reads themselves, so counter values never appear to step backwards.
        """
        return self._read_lock

    @property
    def phase(self) -> str:
        """The label attached to the next tick."""
        return self._phase

    @property
    def running(self) -> bool:
        """Whether the sampling thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def errors(self) -> list[SamplerError]:
        """A copy of the first :data:`MAX_KEPT_ERRORS` failures (all are in ``error_count``)."""
        with self._data_lock:
            return list(self._errors)

    def error_times_s(self, gpu_index: int | None) -> list[float]:
        """When every failed read of one GPU happened (None: the sink), all of them."""
        with self._data_lock:
            return list(self._error_times_s.get(gpu_index, []))

    def set_phase(self, phase: str) -> None:
        """Label every tick from now on with ``phase``."""
        self._phase = phase

    def start(self) -> None:
        """Start sampling; a no-op when already running or when there are no GPUs."""
        if self._thread is not None or len(self.gpus) == 0:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="llem-power-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, wait for it, and take one final tick; a no-op when not running."""
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        thread.join()
        self._thread = None
        self.sample_now()

    def __enter__(self) -> PowerSampler:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        start_s = self.clock()
        while not self._stopping.is_set():
            self.sample_now()
            deadline_s = next_deadline_s(start_s, self.interval_s, self.clock())
            self._stopping.wait(max(0.0, deadline_s - self.clock()))

    def sample_now(self) -> SampleBatch:
        """Take one tick now (the thread calls this; tests may call it directly).

        A GPU whose read fails is left out of the tick and the failure is recorded in
        :attr:`errors`; the sampler goes on with the next GPU and the next tick.
        """
        phase = self._phase
        # The tick is published under the same lock it was read under: two callers (the
        # thread and a main-thread read) then reach the batch list and the sink in the
        # order of their timestamps, and the time series never steps backwards.
        with self._read_lock:
            t_s = self.clock()
            samples = [s for s in (self._read(gpu) for gpu in self.gpus) if s is not None]
            batch = SampleBatch(phase=phase, t_s=t_s, samples=tuple(samples))
            with self._data_lock:
                self._batches.append(batch)
            if self._sink is not None:
                try:
                    self._sink(phase, samples)
                except Exception as e:
                    self._record(e, None)
        return batch

    def _read(self, gpu: GpuDevice) -> GpuSample | None:
        try:
            return gpu.sample(self.clock())
        except Exception as e:
            self._record(e, gpu.index)
            return None

    def _record(self, error: Exception, gpu_index: int | None) -> None:
        where = "the sample sink" if gpu_index is None else f"GPU {gpu_index}"
        t_s = self.clock()
        with self._data_lock:
            self.error_count += 1
            first = self.error_count == 1
            self._error_times_s.setdefault(gpu_index, []).append(t_s)
            if len(self._errors) < MAX_KEPT_ERRORS:
                self._errors.append(SamplerError(t_s, gpu_index, error))
        if first:  # log once; the rest are counted, not repeated every tick
            logger.warning("power sampler: reading %s failed: %s", where, error)

    def batches(self) -> list[SampleBatch]:
        """Return a copy of every tick so far, oldest first."""
        with self._data_lock:
            return list(self._batches)

    def samples(self) -> list[GpuSample]:
        """Return a copy of every sample so far, oldest first, all GPUs interleaved."""
        return [sample for batch in self.batches() for sample in batch.samples]

    def samples_between(self, t0_s: float, t1_s: float) -> list[GpuSample]:
        """Return the samples taken at ``t0_s <= t_s <= t1_s`` (sampler clock, s)."""
        return [sample for sample in self.samples() if t0_s <= sample.t_s <= t1_s]
