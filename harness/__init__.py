"""llem's measurement harness: runs inside each experiment's container (or process).

``harness`` never imports ``orchestrator``; heavy backend libraries are imported lazily inside
the backend that needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness._version import __version__

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from harness.schema.events import RunEvent
    from harness.schema.result import ExperimentResult


def run_experiment(config: Any, output_dir: Path | None = None,
                   on_event: Callable[[RunEvent], None] | None = None) -> ExperimentResult:
    """Run one experiment in this process; see :func:`harness.protocol.run_experiment`.

    ``on_event`` receives every typed run event (``harness.schema.events``) as it is written.
    """
    from harness.protocol import run_experiment as _run

    return _run(config, output_dir, on_event=on_event)


__all__ = ["__version__", "run_experiment"]
