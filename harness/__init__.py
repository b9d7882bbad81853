"""llem's measurement harness: runs inside each experiment's container (or process).

``harness`` never imports ``orchestrator``; heavy backend libraries are imported lazily inside
the backend that needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness._version import __version__

if TYPE_CHECKING:
    from pathlib import Path

    from harness.schema.result import ExperimentResult


def run_experiment(config: Any, output_dir: Path | None = None) -> ExperimentResult:
    """Run one experiment in this process; see :func:`harness.protocol.run_experiment`."""
    from harness.protocol import run_experiment as _run

    return _run(config, output_dir)


__all__ = ["__version__", "run_experiment"]
