"""Events: what a run appends to ``events.jsonl``, and what a study reports to its caller.

Run events are one JSON object per line, told apart by their ``event`` key (a pydantic
discriminated union). The ``start`` event carries ``schema_version``. A reader keeps a line
whose kind it does not know (written by a newer harness) as an :class:`UnknownEvent` instead of
failing, and ignores fields it does not know.

Study events are the host's account of a study (run started, run finished, gaps, cooling);
every run event reaches the caller wrapped in a :class:`RunEventReceived` naming its run.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError

logger = logging.getLogger(__name__)

EVENTS_SCHEMA_VERSION = "1"
HEARTBEAT_PERIOD_S = 5.0
"""How often a running harness appends a heartbeat event (s), whatever else it is doing."""


class _RunEvent(BaseModel):
    """Fields of every run event; ``time`` and ``t_s`` are stamped by ``EventLog``."""

    model_config = ConfigDict(extra="ignore")

    time: float = Field(0.0, description="Wall clock when written (epoch s).")
    t_s: float = Field(0.0, description="Seconds since the run's event log was opened.")


class StartEvent(_RunEvent):
    """The harness began the run (first line)."""

    event: Literal["start"] = "start"
    schema_version: str = EVENTS_SCHEMA_VERSION
    run_id: str
    config_hash: str
    process_started_at: float | None = Field(
        None, description="When the harness process started (epoch s), None where unknown.")
    heartbeat_s: float | None = Field(
        None, description="Period of this harness's heartbeat events (s); None: a harness "
        "that does not beat (older than events schema 1 with heartbeats).")


class PhaseEvent(_RunEvent):
    """A protocol phase began (preflight, baseline, load, warmup, measure, ...)."""

    event: Literal["phase"] = "phase"
    phase: str


class ProgressEvent(_RunEvent):
    """Requests done so far in the measurement window."""

    event: Literal["progress"] = "progress"
    done: int
    total: int


class PowerEvent(_RunEvent):
    """Latest power of each measured GPU (W), at most about once a second."""

    event: Literal["power"] = "power"
    power_w: list[float | None]


class WarningEvent(_RunEvent):
    """A condition the result will carry in ``warnings``."""

    event: Literal["warning"] = "warning"
    code: str
    message: str


class ErrorEvent(_RunEvent):
    """The run failed in ``phase`` (last line; error.json has the traceback)."""

    event: Literal["error"] = "error"
    phase: str
    type: str
    message: str


class HeartbeatEvent(_RunEvent):
    """The harness is alive (every ``HEARTBEAT_PERIOD_S``, in every phase)."""

    event: Literal["heartbeat"] = "heartbeat"
    phase: str


class DoneEvent(_RunEvent):
    """result.json is written and the sampler stopped (last line)."""

    event: Literal["done"] = "done"
    output_tokens: int
    duration_s: float


class BaselineEvent(_RunEvent):
    """Idle power was measured (or read from the cache)."""

    event: Literal["baseline"] = "baseline"
    provenance: str
    power_w: list[float]
    temperature_c: list[float | None] | None = None


class WarmupEvent(_RunEvent):
    """Warmup batches run so far and the time spent (s)."""

    event: Literal["warmup"] = "warmup"
    batches: int
    elapsed_s: float


class UnknownEvent(_RunEvent):
    """A line this reader cannot type: a newer kind, or a known kind of another shape.

    Its fields are kept as they were written (``extra="allow"``).
    """

    model_config = ConfigDict(extra="allow")

    event: str
    note: str = ""


_KNOWN: dict[str, type[_RunEvent]] = {
    cls.model_fields["event"].default: cls
    for cls in (StartEvent, PhaseEvent, ProgressEvent, PowerEvent, WarningEvent, ErrorEvent,
                HeartbeatEvent, DoneEvent, BaselineEvent, WarmupEvent)
}


def _run_event_kind(value: Any) -> str:
    if isinstance(value, UnknownEvent):  # a known kind of another shape stays unknown
        return "unknown"
    kind = value.get("event") if isinstance(value, dict) else getattr(value, "event", None)
    return kind if kind in _KNOWN else "unknown"


RunEvent = Annotated[
    Annotated[StartEvent, Tag("start")]
    | Annotated[PhaseEvent, Tag("phase")]
    | Annotated[ProgressEvent, Tag("progress")]
    | Annotated[PowerEvent, Tag("power")]
    | Annotated[WarningEvent, Tag("warning")]
    | Annotated[ErrorEvent, Tag("error")]
    | Annotated[HeartbeatEvent, Tag("heartbeat")]
    | Annotated[DoneEvent, Tag("done")]
    | Annotated[BaselineEvent, Tag("baseline")]
    | Annotated[WarmupEvent, Tag("warmup")]
    | Annotated[UnknownEvent, Tag("unknown")],
    Discriminator(_run_event_kind),
]
"""Any run event, by its ``event`` key; an unknown kind validates as :class:`UnknownEvent`."""

RUN_EVENT: TypeAdapter[RunEvent] = TypeAdapter(RunEvent)


def parse_run_event(line: str | bytes) -> RunEvent | None:
    """One ``events.jsonl`` line as a typed event.

    Returns:
        The event; an :class:`UnknownEvent` for a kind (or a shape) this reader does not know;
        None, with a logged note, for a line that is not a JSON object.
    """
    try:
        data = json.loads(line)
    except ValueError:
        logger.warning("skipped an events.jsonl line that is not JSON: %.80r", line)
        return None
    if not isinstance(data, dict) or not isinstance(data.get("event"), str):
        logger.warning("skipped an events.jsonl line without an event kind: %.80r", line)
        return None
    try:
        return RUN_EVENT.validate_python(data)
    except ValidationError as error:
        note = (f"not a v{EVENTS_SCHEMA_VERSION} {data['event']} event: "
                f"{error.error_count()} problem(s)")
        return UnknownEvent.model_validate({**data, "note": note})


# Study events: the host's side, never written to a file, delivered to the caller's callback.


class _StudyEvent(BaseModel):
    model_config = ConfigDict(frozen=True)


class RunStarted(_StudyEvent):
    """A run's process or container is about to start."""

    kind: Literal["run_started"] = "run_started"
    run_id: str


class RunEventReceived(_StudyEvent):
    """A run appended ``event`` to its events.jsonl."""

    kind: Literal["run_event"] = "run_event"
    run_id: str
    event: RunEvent


class RunFinished(_StudyEvent):
    """A run ended; ``status`` as the manifest records it, ``cause`` when it failed."""

    kind: Literal["run_finished"] = "run_finished"
    run_id: str
    status: str
    cause: str | None = None


class Gap(_StudyEvent):
    """The fixed pause between runs: ``remaining_s`` of ``seconds`` left."""

    kind: Literal["gap"] = "gap"
    seconds: float
    remaining_s: float


class Cooling(_StudyEvent):
    """Waiting for the GPUs to cool down, for ``elapsed_s`` so far."""

    kind: Literal["cooling"] = "cooling"
    elapsed_s: float


class Cooled(_StudyEvent):
    """The cool-down ended: after ``waited_s``, with ``outcome`` (cool, cut_off, ...)."""

    kind: Literal["cooled"] = "cooled"
    waited_s: float | None
    outcome: str


class JobQueued(_StudyEvent):
    """A run's batch job changed state in the scheduler's queue (the Slurm runner)."""

    kind: Literal["job_queued"] = "job_queued"
    run_id: str
    job_id: str
    state: str = Field(description="Slurm's state: PENDING, RUNNING, ...")
    reason: str = Field("", description="Why it waits (Resources, Priority, ...), if it does.")
    position: int | None = Field(None, description="Its place among the pending jobs of its "
                                 "partition, by priority (1: next); null once it runs.")
    node: str = Field("", description="The node it runs on, once it runs.")


class ResumeNote(_StudyEvent):
    """On resume: something the study directory held was set aside (``note`` says what)."""

    kind: Literal["resume_note"] = "resume_note"
    note: str


StudyEvent = Annotated[
    RunStarted | RunEventReceived | RunFinished | Gap | Cooling | Cooled | JobQueued
    | ResumeNote,
    Field(discriminator="kind"),
]
"""Any study event, by its ``kind``."""


__all__ = [
    "EVENTS_SCHEMA_VERSION",
    "HEARTBEAT_PERIOD_S",
    "RUN_EVENT",
    "BaselineEvent",
    "Cooled",
    "JobQueued",
    "Cooling",
    "DoneEvent",
    "ErrorEvent",
    "Gap",
    "HeartbeatEvent",
    "PhaseEvent",
    "PowerEvent",
    "ResumeNote",
    "ProgressEvent",
    "RunEvent",
    "RunEventReceived",
    "RunFinished",
    "RunStarted",
    "StartEvent",
    "StudyEvent",
    "UnknownEvent",
    "WarmupEvent",
    "WarningEvent",
    "parse_run_event",
]
