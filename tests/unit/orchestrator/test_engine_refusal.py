"""An engine that refuses to start a run's container must not leave the run ``running``."""

from __future__ import annotations

from harness.errors import LlemError
from orchestrator.execute import StudyExecution
from orchestrator.manifest import Manifest
from orchestrator.runners.docker.api import EngineError, ImageInfo
from orchestrator.runners.docker.runner import DockerRunner
from orchestrator.schedule import plan
from orchestrator.study import load_study
from orchestrator.study_dir import new_manifest, save_manifest


class RefusingContainer:
    def __enter__(self):
        raise EngineError("the Docker engine refused: could not select device driver "
                          "\"nvidia\" with capabilities: [[gpu]]")

    def __exit__(self, *exc):
        return False


class RefusingEngine:
    """Has the image; refuses to start any container (an APIError, not a lost engine)."""

    def image(self, ref):
        return ImageInfo(ref=ref, id="sha256:1", digest=None, labels={}, size_bytes=1, tags=[])

    def run_container(self, kwargs):
        return RefusingContainer()

    def containers(self, label):
        return []

    def info(self):
        return {"Runtimes": {"nvidia": {}}}


def test_a_container_the_engine_refuses_to_start_is_recorded_failed_with_a_summary(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("model: m\nbackend: pytorch\n"
                    "execution: {n_cycles: 1, config_gap_s: 0, cycle_gap_s: 0}\n")
    study = load_study(path)
    out = tmp_path / "out"
    out.mkdir()
    runner = DockerRunner(engine=RefusingEngine())  # type: ignore[arg-type]
    runs = plan(study)
    manifest = new_manifest(study, runs, runner.name)
    save_manifest(out, manifest)
    try:
        StudyExecution(study, out, runner).execute(runs, manifest)
    except LlemError:
        pass  # the CLI prints it; what matters is what the study directory says
    (run,) = Manifest.load(out).runs
    assert run.status == "failed", f"the run is left {run.status!r} in the manifest"
    assert run.failure is not None and "refused" in run.failure.message
    assert (out / "summary.json").is_file()
