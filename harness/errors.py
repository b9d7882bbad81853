"""One root for every error llem raises on purpose.

Vendor errors (NVML, transformers, the Docker SDK) are translated into these at one boundary,
with ``raise ... from e``, so callers handle one family and users read one kind of message.
"""

from __future__ import annotations


class LlemError(Exception):
    """Root of every error llem raises on purpose.

    Attributes:
        fix: one sentence telling the user what to do about it, or None.
    """

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        if self.fix:
            return f"{self.message}\n  fix: {self.fix}"
        return self.message


class ConfigError(LlemError):
    """A configuration or study file is invalid (bad input: exit code 2)."""


class PreflightError(LlemError):
    """The machine cannot serve the experiment as configured (GPU, backend, model, sensor)."""


class EnergyError(LlemError):
    """An energy reading cannot be trusted (for example a counter that went backwards)."""


class CounterWentBackwards(EnergyError):
    """An energy counter decreased inside a window (driver reload or reset): never energy."""


class BackendError(LlemError):
    """The inference backend failed while loading or generating."""


class RunnerError(LlemError):
    """A runner could not start, follow or clean up a run.

    Attributes:
        fatal: the runner can start no further run either (its engine is gone): the study
            records the run as failed and stops, instead of failing every later run alike.
    """

    fatal: bool = False
