"""Run order and gaps between runs."""

from __future__ import annotations

import time

from orchestrator.execute import StudyExecution, plan
from orchestrator.runners.local import LocalRunner
from orchestrator.study import load_study


def study(tmp_path, order="interleaved", gap=0.0):
    path = tmp_path / "s.yaml"
    path.write_text(f"model: m\nbackend: pytorch\nexecution: {{n_cycles: 2, cycle_order: {order},"
                    f" config_gap_s: {gap}, cycle_gap_s: 0}}\n"
                    "sweep:\n  pytorch.batch_size: [1, 2, 3]\n")
    return load_study(path)


def test_orders(tmp_path):
    ids = lambda runs: [(r.number, r.cycle) for r in runs]  # noqa: E731
    assert ids(plan(study(tmp_path, "interleaved"))) == [(1, 1), (2, 1), (3, 1),
                                                         (1, 2), (2, 2), (3, 2)]
    assert ids(plan(study(tmp_path, "sequential"))) == [(1, 1), (1, 2), (2, 1), (2, 2),
                                                        (3, 1), (3, 2)]
    shuffled = ids(plan(study(tmp_path, "shuffled")))
    assert shuffled == ids(plan(study(tmp_path, "shuffled")))  # seeded: the same every time
    assert sorted(shuffled) == sorted(ids(plan(study(tmp_path, "sequential"))))


def test_gap_counts_down_and_stops_on_request(tmp_path):
    loaded = study(tmp_path, gap=2.0)
    events = []
    runner = LocalRunner()
    execution = StudyExecution(loaded, tmp_path, runner, events.append)
    first, second = plan(loaded)[:2]
    start = time.monotonic()
    execution._gap(first, second)
    assert 1.9 <= time.monotonic() - start < 3.0
    assert [e["remaining_s"] for e in events] == [2.0, 1.0]
    runner.request_stop()
    start = time.monotonic()
    execution._gap(first, second)
    assert time.monotonic() - start < 0.5
