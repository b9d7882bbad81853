"""RunContainer, the one handle on a run's container: status, wait, stop, kill, logs, removal."""

from __future__ import annotations

import uuid

import pytest

from orchestrator.runners.docker.api import EngineError, RunContainer
from orchestrator.runners.docker.labels import LABEL_SESSION, LABEL_STUDY
from orchestrator.runners.docker.sessions import session_labels
from orchestrator.runners.session import Session

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def kwargs(image: str, study: str, code: str) -> dict:
    return {"image": image, "entrypoint": ["python", "-c", code], "detach": True,
            "read_only": True, "cap_drop": ["ALL"], "network_mode": "none",
            "labels": {**session_labels(Session.current()), LABEL_STUDY: study}}


def of_study(engine, study: str) -> list:
    return [c for c in engine.containers(LABEL_SESSION) if c.labels.get(LABEL_STUDY) == study]


def test_a_container_ends_by_itself_and_is_removed_on_exit(cpu_image, engine):
    study = f"rc-{uuid.uuid4().hex[:8]}"
    with engine.run_container(kwargs(cpu_image, study, "print('hello'); raise SystemExit(3)")
                              ) as container:
        assert isinstance(container, RunContainer) and container.id
        assert container.wait(timeout_s=120) == 3
        assert container.status() == "exited"
        assert container.state()["ExitCode"] == 3
        assert b"hello" in container.logs()
        with pytest.raises(EngineError):
            container.kill()  # it has ended: the engine refuses, in our words
    assert of_study(engine, study) == []


def test_a_running_container_is_stopped_with_grace_and_removed_after_an_error(cpu_image,
                                                                               engine):
    study = f"rc-{uuid.uuid4().hex[:8]}"
    code = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: (print('term', flush=True), sys.exit(7)))\n"
            "time.sleep(300)\n")
    with pytest.raises(RuntimeError, match="a bug of ours"), \
            engine.run_container(kwargs(cpu_image, study, code)) as container:
        assert container.wait(timeout_s=2) is None  # still running: no end within 2 s
        assert container.status() == "running"
        container.stop(grace_s=30)
        assert container.state()["ExitCode"] == 7 and b"term" in container.logs()
        raise RuntimeError("a bug of ours")
    assert of_study(engine, study) == []
