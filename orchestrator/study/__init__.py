"""Study files: read a YAML grid of configurations and expand it into experiments.

``load_study(path)`` is the entry point. A YAML with ``sweep:`` or ``experiments:`` is a study;
anything else is a single experiment.
"""

from orchestrator.study.errors import StudyFileError
from orchestrator.study.execution import ExecutionConfig
from orchestrator.study.loader import MAX_RUNS, check_cycles, design_hash, load_study
from orchestrator.study.model import SkippedEntry, Study, StudyEntry

__all__ = [
    "MAX_RUNS",
    "ExecutionConfig",
    "SkippedEntry",
    "Study",
    "StudyEntry",
    "StudyFileError",
    "check_cycles",
    "design_hash",
    "load_study",
]
