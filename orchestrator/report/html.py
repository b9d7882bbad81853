"""``report.html``: one self-contained page of a study's figures that opens offline.

Plotly's JavaScript is inlined once in the page's head and every figure is a ``<div>`` with the
script that draws it, so the file needs no network, no CDN, no web font and no other file; it
can be mailed or archived alone. The page itself is built by :mod:`html_page`; this module is
importable without Plotly (the ``report`` extra), which only writing a report needs.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import ConfigError
from harness.io import write_text
from orchestrator.report.study_data import StudyData
from orchestrator.study.report_inputs import ReportInputs

REPORT_NAME = "report.html"


def write_html_report(data: StudyData, inputs: ReportInputs) -> Path:
    """Write ``<study_dir>/report.html`` atomically and return its path.

    Raises:
        ConfigError: Plotly (the ``report`` extra) is not installed.
    """
    try:
        from orchestrator.report.html_page import render_report
    except ImportError as error:
        if error.name is None or not error.name.startswith("plotly"):
            raise
        raise ConfigError("report.html needs Plotly, which is not installed",
                          fix="pip install 'llem[report]'") from error
    path = data.directory / REPORT_NAME
    write_text(path, render_report(data, inputs))
    return path
