"""Generate docs/configuration.md: harness's experiment reference plus the study-level settings.

``python -m orchestrator.docgen > docs/configuration.md``; a unit test fails when the committed
file differs from what this prints. The harness renders every experiment-level key (it never
imports the orchestrator); the keys only a study file has, ``execution:`` and ``report:``, are the
orchestrator's and are added here, so one generated file holds the whole configuration.
"""

from __future__ import annotations

from harness.schema import docgen
from orchestrator.study.execution import ExecutionConfig, SlurmConfig
from orchestrator.study.report_inputs import ReportInputs

HEADER = """# Configuration reference

Generated from the pydantic models by `python -m orchestrator.docgen`; do not edit by hand.
Every model rejects unknown keys. A backend-section field left unset means "the backend's own
default"; the value actually used is recorded in `result.json` under `effective_parameters`.
"""

EXECUTION = """
## `execution` (study level)

How a study runs its experiments: cycles, order, pauses, devices and time limits. Only a study
file has this block (it is not part of an experiment, of `result.json` or of any hash); the
`llem run` options `--cycles`, `--order`, `--gpus` and `--no-gaps` override it.
"""

SLURM = """
### `execution.slurm`

How the Slurm runner (`--runner slurm`) submits each run: one batch job per run, on storage the
nodes share (docs/runners.md, "slurm"). Ignored by the other runners.
"""

REPORT = """
## `report` (study level)

Inputs of the report's derived figures (docs/report.md): with a grid carbon intensity and an
electricity price set, `report.html` gives emissions and cost per million output tokens, each
labelled with these inputs; unset, those figures are absent (never guessed). They change no
measurement and are in no hash; `llem report --carbon-intensity` and `--price` (with
`--currency`) override them.
"""


def render() -> str:
    """The whole configuration reference as markdown, experiment and study level."""
    experiment = docgen.render().removeprefix(docgen.HEADER)
    return (HEADER + experiment + EXECUTION + "\n"
            + docgen.model_table(ExecutionConfig, "execution.") + "\n"
            + SLURM + "\n" + docgen.model_table(SlurmConfig, "execution.slurm.") + "\n"
            + REPORT + "\n" + docgen.model_table(ReportInputs, "report.") + "\n")


if __name__ == "__main__":
    print(render(), end="")
