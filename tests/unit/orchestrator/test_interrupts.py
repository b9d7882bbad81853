"""Ctrl-C semantics of `llem run`: graceful, then kill now, then ignored."""

from __future__ import annotations

import signal

import pytest

from orchestrator.cli import _Interrupts
from orchestrator.runners.local import LocalRunner


def test_first_stops_gracefully_second_kills_once_later_ones_are_ignored():
    runner = LocalRunner()
    interrupts = _Interrupts(runner)
    interrupts(signal.SIGINT, None)
    assert runner.stop_requested.is_set()
    with pytest.raises(KeyboardInterrupt):
        interrupts(signal.SIGINT, None)
    interrupts(signal.SIGINT, None)  # the summary is being written: not interrupted again


def test_after_the_study_a_second_ctrl_c_no_longer_raises():
    interrupts = _Interrupts(LocalRunner())
    interrupts(signal.SIGTERM, None)
    interrupts.disarm()
    interrupts(signal.SIGINT, None)
    assert interrupts.count == 2
