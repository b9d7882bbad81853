"""An engine that refuses to start a run's container must not leave the run ``running``."""

from __future__ import annotations

from llem_testkit.results import fake_result
from llem_testkit.studies import single_run_study

from orchestrator.execute import StudyExecution
from orchestrator.manifest import Manifest
from orchestrator.runners.docker.api import Engine, EngineError, ImageInfo
from orchestrator.runners.docker.runner import DockerRunner
from orchestrator.schedule import plan
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
    study, out = single_run_study(tmp_path)
    runner = DockerRunner(engine=RefusingEngine())  # type: ignore[arg-type]
    runs = plan(study)
    manifest = new_manifest(study, runs, runner.name)
    save_manifest(out, manifest)
    StudyExecution(study, out, runner).execute(runs, manifest)
    (run,) = Manifest.load(out).runs
    assert run.status == "failed", f"the run is left {run.status!r} in the manifest"
    assert run.failure is not None and "refused" in run.failure.message
    assert (out / "summary.json").is_file()


class _SdkContainer:
    """The SDK's container: the harness in it completes the run as soon as it starts."""

    id, name, status = "c1", "llem-run", "created"

    def __init__(self, on_start):
        self._on_start = on_start
        self.attrs = {"State": {"Status": "exited", "ExitCode": 0, "OOMKilled": False}}

    def start(self):
        self._on_start()
        self.status = "exited"

    def reload(self):
        pass

    def logs(self, stdout=True, stderr=True):
        return b"done\n"


class _SdkClient:
    """A Docker client whose engine goes away once the run's container has ended."""

    def __init__(self, on_start):
        class Images:
            def get(self, ref):
                return type("Image", (), {"id": "sha256:1", "tags": [ref],
                                          "attrs": {"Config": {"Labels": {}}, "Size": 1}})()

        class Containers:
            def create(self, **kwargs):
                return _SdkContainer(on_start)

            def list(self, **kwargs):
                return []

        class Api:
            def remove_container(self, key, force=True, v=True):
                import requests

                raise requests.exceptions.ConnectionError("engine socket closed")

        self.images, self.containers, self.api = Images(), Containers(), Api()

    def info(self):
        return {"Runtimes": {"nvidia": {}}}


def test_a_run_that_completed_before_the_engine_went_away_keeps_its_result(tmp_path):
    from harness.schema.run_spec import RunSpec
    from orchestrator.runners.docker.api import Engine

    study, out = single_run_study(tmp_path)
    runs = plan(study)
    run_dir = out / runs[0].run_id

    def harness_completes():
        spec = RunSpec.model_validate_json((run_dir / "experiment.json").read_text())
        (run_dir / "result.json").write_text(fake_result(spec, 100.0).model_dump_json())

    runner = DockerRunner(engine=Engine(client=_SdkClient(harness_completes)))
    manifest = new_manifest(study, runs, runner.name)
    save_manifest(out, manifest)
    StudyExecution(study, out, runner).execute(runs, manifest)
    (run,) = Manifest.load(out).runs
    assert run.status == "completed", (
        f"a run whose harness exited 0 with a valid result.json is recorded {run.status!r} "
        f"({run.failure.message if run.failure else ''}); resume would delete its result")


def test_a_paused_container_is_not_taken_for_one_that_ended(tmp_path):
    # `docker pause` freezes the harness: the container still exists and has not ended (the
    # engine reports ExitCode 0 for it). It must be stopped as stalled, not classified from
    # an exit code it never had ("exited 0 but wrote no result.json").
    from harness.testing import FakeClock

    class Paused(_SdkContainer):
        def start(self):
            self.status = "paused"

        def stop(self, timeout=None):
            self.status = "exited"
            self.attrs = {"State": {"Status": "exited", "ExitCode": 137, "OOMKilled": False}}

    class Client(_SdkClient):
        def __init__(self):
            super().__init__(lambda: None)
            self.containers.create = lambda **kwargs: Paused(lambda: None)
            self.api.remove_container = lambda *args, **kwargs: None

    study, out = single_run_study(tmp_path, "stall_timeout_s: 60")
    runner = DockerRunner(engine=Engine(client=Client()))
    clock = FakeClock()
    runner.clock, runner.sleep = clock, clock.advance
    runs = plan(study)
    manifest = new_manifest(study, runs, runner.name)
    save_manifest(out, manifest)
    StudyExecution(study, out, runner).execute(runs, manifest)
    (run,) = Manifest.load(out).runs
    assert run.failure is not None and run.failure.cause == "stalled", run.failure


class _RemovingApi:
    """The SDK's low-level API when the engine answers remove_container with ``error``."""

    def __init__(self, error):
        self.error = error

    def remove_container(self, key, force, v):
        raise self.error


class _Client:
    def __init__(self, error):
        self.api = _RemovingApi(error)


def _api_error(status: int, message: str):
    import docker.errors
    import requests

    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError(message, response=response, explanation=message)


def test_a_container_another_client_is_removing_counts_as_removed():
    # Seen in CI: a resumed study's orphan cleanup met the container of a session that had just
    # ended, while the engine was still removing it: 409 "removal ... already in progress".
    error = _api_error(409, "removal of container 7792a339 is already in progress")
    Engine(client=_Client(error)).remove("7792a339")  # no error: it is going away


def test_any_other_refusal_to_remove_is_still_an_engine_error():
    import pytest

    error = _api_error(409, "You cannot remove a running container: stop it first")
    with pytest.raises(EngineError, match="cannot remove a running container"):
        Engine(client=_Client(error)).remove("c1")
