"""docs/nightly.md's systemd units, cron line and CI workflow are copy-paste ready."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

from ruamel.yaml import YAML

DOC = Path(__file__).parents[4] / "docs" / "nightly.md"


def blocks(language: str) -> list[str]:
    """The fenced code blocks of ``language`` in docs/nightly.md, in order."""
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def unit(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(text)
    return parser


def test_the_service_and_timer_parse_and_carry_what_systemd_needs():
    service, timer = (unit(text) for text in blocks("ini"))
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["ExecStart"].startswith("/usr/bin/make nightly")
    assert Path(service["Service"]["WorkingDirectory"]).is_absolute()
    assert re.fullmatch(r"\*-\*-\* \d\d:\d\d:\d\d", timer["Timer"]["OnCalendar"])
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_the_cron_line_has_five_fields_and_runs_make_nightly():
    (line,) = [row for row in blocks("cron")[0].splitlines() if row.strip()]
    fields = line.split(maxsplit=5)
    assert all(re.fullmatch(r"[\d*/,-]+", field) for field in fields[:5]), fields
    assert "make nightly" in fields[5]


def test_the_workflow_is_scheduled_on_a_self_hosted_gpu_runner_and_runs_make_nightly():
    (text,) = blocks("yaml")
    workflow = YAML(typ="safe").load(text)
    cron = workflow["on"]["schedule"][0]["cron"]
    assert len(cron.split()) == 5
    job = workflow["jobs"]["nightly"]
    assert "self-hosted" in job["runs-on"] and "gpu" in job["runs-on"]
    runs = [step.get("run", "") for step in job["steps"]]
    assert any(run.startswith("make nightly") for run in runs)
    assert any("GITHUB_STEP_SUMMARY" in run for run in runs)
    assert workflow["concurrency"]["cancel-in-progress"] is False
