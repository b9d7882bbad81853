"""Reading a study directory back: a stale stats.json is refused, and the fix it names works."""

from __future__ import annotations

import pytest
from llem_testkit.runners import ScriptedResults

from harness.errors import ConfigError
from orchestrator import run_study
from orchestrator.report.study_data import StudyData

EPT = "energy_per_output_token_j"


def test_the_resume_the_refusal_names_brings_the_left_out_run_back(tmp_path):
    # A resume killed after its third run completed, before stats.json was written again:
    # the refusal names the run and `llem run --resume`; that resume pools all three runs.
    path = tmp_path / "t.yaml"
    path.write_text("name: t\nmodel: m\nbackend: pytorch\n"
                    "execution: {n_cycles: 2, config_gap_s: 0, cycle_gap_s: 0}\n")
    values = [1.0, 1.01, 1.5]

    def runner() -> ScriptedResults:
        return ScriptedResults(lambda spec: {EPT: values[spec.cycle - 1]})

    _, study_dir = run_study(path, runner(), output=tmp_path / "out", no_gaps=True)
    stale = (study_dir / "stats.json").read_bytes()
    run_study(path, runner(), resume=study_dir, cycles=3, no_gaps=True)
    (study_dir / "stats.json").write_bytes(stale)
    with pytest.raises(ConfigError, match="001_pytorch_c3") as refused:
        StudyData.load(study_dir)
    assert f"llem run --resume {study_dir}" in str(refused.value)
    run_study(path, runner(), resume=study_dir, no_gaps=True)
    (config,) = StudyData.load(study_dir).configurations
    assert config.values(EPT) == pytest.approx(values)
