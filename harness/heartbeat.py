"""The harness's liveness signal: a heartbeat event every few seconds, whatever the run does.

Model loads and warmups can be silent for minutes; the host tells such a run from a hung one by
the heartbeats it keeps appending to ``events.jsonl`` (see ``execution.stall_timeout_s``).
A heartbeat proves the process is alive and its event log writable, not that it progresses:
``execution.timeout_s`` bounds that.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType

from harness.io import EventLog
from harness.schema.events import HEARTBEAT_PERIOD_S, HeartbeatEvent


class Heartbeat:
    """A daemon thread appending a heartbeat event every ``period_s``; a context manager.

    Args:
        events: the run's event log.
        phase: returns the phase the run is in, recorded in each heartbeat.
        period_s: seconds between two heartbeats.
    """

    def __init__(self, events: EventLog, phase: Callable[[], str],
                 period_s: float = HEARTBEAT_PERIOD_S) -> None:
        self.events = events
        self.phase = phase
        self.period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="llem-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.period_s):
            self.events.emit(HeartbeatEvent(phase=self.phase()))
