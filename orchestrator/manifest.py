"""``manifest.json``: the study's live checkpoint, rewritten atomically on every change.

A run's identity is its measurement config hash plus its cycle, so resume can match runs to a
study file regardless of order.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.errors import ConfigError
from harness.io import write_json
from harness.schema.result import SCHEMA_VERSION

RunStatus = Literal["pending", "running", "completed", "failed", "skipped", "interrupted"]
FailureCause = Literal["error", "oom", "killed", "timeout", "stalled", "interrupted",
                       "invalid_result"]


def now_utc() -> str:
    """ISO-8601 UTC timestamp with seconds."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class Failure(BaseModel):
    """Why a run did not complete."""

    model_config = ConfigDict(extra="forbid")

    cause: FailureCause
    message: str
    exit_code: int | None = None
    log_tail: list[str] = Field(default_factory=list)


class RunEntry(BaseModel):
    """One (configuration, cycle) of a study."""

    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(description="Run directory name.")
    config_hash: str
    cycle: int
    slug: str
    backend: str
    status: RunStatus = "pending"
    started_at: str | None = None
    finished_at: str | None = None
    result_path: str | None = Field(None, description="Relative to the study directory.")
    failure: Failure | None = None


class SkippedRecord(BaseModel):
    """A combination the cross-checks rejected, listed up front."""

    model_config = ConfigDict(extra="forbid")

    description: str
    reason: str


class Manifest(BaseModel):
    """Every run of a study and where it stands."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal["1"] = SCHEMA_VERSION
    study: str
    design_hash: str
    runner: str
    created_at: str = Field(default_factory=now_utc)
    cycle_order: str
    runs: list[RunEntry]
    skipped: list[SkippedRecord] = Field(default_factory=list)

    def save(self, study_dir: Path) -> None:
        """Rewrite manifest.json atomically."""
        write_json(study_dir / "manifest.json", self)

    def counts(self) -> dict[str, int]:
        """Number of runs per status."""
        counts: dict[str, int] = {}
        for run in self.runs:
            counts[run.status] = counts.get(run.status, 0) + 1
        return counts

    @classmethod
    def load(cls, study_dir: Path) -> Manifest:
        """Read manifest.json, failing clearly on a missing file or unknown schema."""
        path = study_dir / "manifest.json"
        if not path.is_file():
            raise ConfigError(f"{path}: no manifest", fix="pass a study directory made by llem run")
        manifest = cls.model_validate_json(path.read_text(encoding="utf-8"))
        return manifest
