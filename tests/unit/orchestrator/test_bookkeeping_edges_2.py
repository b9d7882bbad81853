"""Study bookkeeping at its edges, second look: content digests, hub commits, run folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from llem_testkit.runners import ResultWriter
from llem_testkit.studies import one_run_study

from orchestrator import run_study

COMMIT_A = "a" * 40
COMMIT_B = "b" * 40


def local_model(folder: Path, weights: bytes = b"\x00" * 64) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "llama", "hidden_size": 8}')
    (folder / "tokenizer.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(weights)
    return folder


def hub_snapshot(hub: Path, commit: str, *, complete: bool = True) -> None:
    """``org/tiny`` at ``commit`` in a Hugging Face cache at ``hub``; refs/main names it."""
    repo = hub / "models--org--tiny"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / "config.json").write_text(f'{{"model_type": "llama", "v": "{commit[0]}"}}')
    if complete:
        (snapshot / "model.safetensors").write_bytes(b"\x00" * 64)
        (snapshot / "tokenizer.json").write_text("{}")


def hub_study(folder: Path) -> Path:
    return one_run_study(folder, "org/tiny", name="h", file="h.yaml")


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache of the test's own, where huggingface_hub looks."""
    from huggingface_hub import constants

    path = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(path))
    return path


def test_the_digest_cache_sees_a_same_size_rewrite_that_kept_the_modification_time(tmp_path):
    # cp --preserve=timestamps, rsync --inplace -t, or a rewrite within the filesystem's
    # timestamp tick: same path, inode, size and mtime, other bytes. Only ctime, which no
    # user can set, tells; the cache key leaves it out.
    from harness.digests import DigestCache

    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\x00" * 64)
    cache = DigestCache(tmp_path / "cache.json")
    before = cache.sha256(weights)
    cache.save()
    stat = weights.stat()
    with weights.open("r+b") as handle:  # in place: the inode stays
        handle.write(b"\x01" * 64)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert DigestCache(tmp_path / "cache.json").sha256(weights) != before, \
        "fine-tuned weights of the same size keep the old weights' digest"


def test_a_local_model_edited_after_the_study_was_planned_is_refused_by_its_run(tmp_path):
    # A dataset edited mid-study is refused by each later run (check_dataset); a model
    # directory rewritten mid-study (a training job saving into it) is measured and recorded
    # under the digest taken when the study was loaded, and its cycles pooled. The check sits
    # in the run's preflight beside check_dataset, so every backend's runs refuse it.

    from harness.energy import EMPTY_GPUS
    from harness.errors import PreflightError
    from harness.models import resolved_revision
    from harness.protocol import ExperimentRun
    from harness.schema.config import ExperimentConfig
    from harness.schema.run_spec import RunSpec

    model = local_model(tmp_path / "tiny")
    config = ExperimentConfig(model=str(model), backend="pytorch", energy={"backend": "none"},
                              model_digest=resolved_revision(model))
    (model / "model.safetensors").write_bytes(b"\x01" * 64)
    run = ExperimentRun(RunSpec(run_id="r1", config=config), tmp_path / "run", gpus=EMPTY_GPUS,
                        device="cpu")
    with pytest.raises(PreflightError) as refused:
        run.execute()
    said = str(refused.value)
    assert f"model directory {model} has changed" in said and "model.safetensors" in said, said


def test_preflight_checks_the_commit_the_runs_load_not_where_main_is_now(tmp_path, hub):
    # The cache held only config.json of main = a... (AutoConfig.from_pretrained leaves that),
    # so the study pinned commit a. The preflight's fetch of `main` then brought b... (an
    # upstream push) complete, and moved refs/main. Preflight looks at main and passes; no
    # hub model was unpinned, so llem run does not load the study again; every run loads a,
    # which has no weights.
    from harness import models
    from orchestrator.preflight import model_problems
    from orchestrator.study import load_study

    hub_snapshot(hub, COMMIT_A, complete=False)
    study = load_study(hub_study(tmp_path))
    config = study.experiments[0].config
    assert config.load_revision == COMMIT_A
    hub_snapshot(hub, COMMIT_B)  # what fetch_missing did
    assert model_problems(study) or models.in_cache(config.model, config.load_revision, hub), \
        "preflight passed a study whose runs load a commit the cache does not hold whole"


def test_a_resume_after_the_hub_cache_was_emptied_fetches_the_model_and_goes_on(
        tmp_path, monkeypatch, hub):
    # `hf cache delete`, another HF_HOME or another host: the model is fetched again at the
    # same commit. The resume's checks now run before the fetch, with the model unpinned, so
    # its hash lacks model_digest and the resume is refused as another configuration.
    import shutil

    from click.testing import CliRunner

    from orchestrator import cli

    hub_snapshot(hub, COMMIT_A)
    path = hub_study(tmp_path)
    _, study_dir = run_study(path, ResultWriter(), output=tmp_path / "out", no_gaps=True)
    shutil.rmtree(hub)

    def preflight(study, runner, *, fetch, say):
        hub_snapshot(hub, COMMIT_A)  # fetched: main is still a...
        return []

    monkeypatch.setattr(cli, "study_problems", preflight)
    monkeypatch.setattr(cli, "make_runner", lambda name, image=None, slurm=None: ResultWriter())
    done = CliRunner().invoke(cli.main, ["run", "--resume", str(study_dir), "--cycles", "2",
                                         "--runner", "local", "--yes"])
    assert done.exit_code == 0, done.output


def lora_study(folder: Path) -> Path:
    local_model(folder / "tiny")
    adapter = folder / "adapter"
    adapter.mkdir(exist_ok=True)
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    (adapter / "adapter_model.safetensors").write_bytes(b"\x00" * 64)
    path = folder / "l.yaml"
    path.write_text("name: l\nmodel: ./tiny\nbackend: pytorch\nlora: {adapter: ./adapter}\n"
                    "execution: {n_cycles: 1, config_gap_s: 0, cycle_gap_s: 0}\n")
    return path


def test_a_retrained_lora_adapter_is_another_configuration(tmp_path):
    # The adapter's weights are model files as much as the base model's: a retrained adapter
    # of the same shape must not be pooled with the old one's cycles.
    from orchestrator.study import load_study

    path = lora_study(tmp_path)
    before = load_study(path).experiments[0].config.measurement_config_hash
    (tmp_path / "adapter" / "adapter_model.safetensors").write_bytes(b"\x01" * 64)
    after = load_study(path).experiments[0].config.measurement_config_hash
    assert before != after, "cycles on two different LoRA adapters would be pooled"


def test_a_relative_lora_adapter_is_relative_to_the_study_file(tmp_path, monkeypatch):
    # model: ./tiny is taken from the study file's folder; lora.adapter: ./adapter from
    # wherever llem runs, so after a `cd` another adapter runs under the same hash.
    from orchestrator.study import load_study

    path = lora_study(tmp_path / "study")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    adapter = load_study(path).experiments[0].config.lora
    assert adapter is not None
    assert Path(adapter.adapter) == (tmp_path / "study" / "adapter").resolve()


def test_a_run_folder_linked_to_another_runs_folder_leaves_that_run_whole(tmp_path):
    # fresh_run_dir accepts a symbolic link whose target is directly inside the study
    # directory, and empties the target: another, completed run's files.
    import contextlib

    from orchestrator.schedule import plan
    from orchestrator.study import load_study

    path = tmp_path / "k.yaml"
    path.write_text("name: k\nmodel: m\nbackend: pytorch\n"
                    "execution: {n_cycles: 1, config_gap_s: 0, cycle_gap_s: 0}\n"
                    "sweep:\n  pytorch.batch_size: [1, 2]\n")
    done, failed = [run.run_id for run in plan(load_study(path))]
    _, study_dir = run_study(path, ResultWriter(fail=(failed,)), output=tmp_path / "out",
                             no_gaps=True)
    kept = {child.name: child.read_bytes() for child in (study_dir / done).iterdir()
            if child.is_file()}
    for child in (study_dir / failed).iterdir():
        child.unlink()
    (study_dir / failed).rmdir()
    (study_dir / failed).symlink_to(study_dir / done)  # cp -rs, a hand-made link
    with contextlib.suppress(Exception):
        run_study(path, ResultWriter(), resume=study_dir, no_gaps=True)
    now = {child.name: child.read_bytes() for child in (study_dir / done).resolve().iterdir()
           if child.is_file()}
    assert all(now.get(name) == data for name, data in kept.items()), \
        f"files of the completed run {done} were emptied: {sorted(kept)} -> {sorted(now)}"


def test_a_resume_refused_because_main_moved_names_the_model_and_the_commits(
        tmp_path, hub):
    # check_inputs names a changed local model or dataset; a hub model whose cached main moved
    # reaches check_design, which reads "1 configuration(s) added (pytorch ), 1 removed or
    # changed (pytorch )" and says to resume with the original study file, which is the file.
    from harness.errors import LlemError

    hub_snapshot(hub, COMMIT_A)
    path = hub_study(tmp_path)
    _, study_dir = run_study(path, ResultWriter(), output=tmp_path / "out", no_gaps=True)
    hub_snapshot(hub, COMMIT_B)  # llem fetch after an upstream push
    try:
        run_study(path, ResultWriter(), resume=study_dir, cycles=2, no_gaps=True)
    except LlemError as error:
        said = str(error)
    else:
        raise AssertionError("a resume on another commit of the model was not refused")
    assert "org/tiny" in said and COMMIT_A[:8] in said and COMMIT_B[:8] in said, said


class TimeoutRecorder(ResultWriter):
    """Records the wall-time limit each run was given."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[float | None] = []

    def run(self, run_dir, timeout_s, on_event, gpus=None):
        self.timeouts.append(timeout_s)
        return super().run(run_dir, timeout_s, on_event, gpus)


def test_a_resume_from_the_folder_alone_keeps_the_timeout_the_study_last_ran_with(tmp_path):
    # Runs timed out at 60 s; the user resumed with the same design and timeout_s: 900. A later
    # `llem run --resume DIR` "goes on as the study last ran" in order and GPUs, but loads the
    # first invocation's file: back to 60 s, and the runs time out again.
    from orchestrator.study_dir import load_kept_study

    head = "name: t\nmodel: m\nbackend: pytorch\n"
    (tmp_path / "t1.yaml").write_text(
        head + "execution: {n_cycles: 1, config_gap_s: 0, cycle_gap_s: 0, timeout_s: 60}\n")
    (tmp_path / "t2.yaml").write_text(
        head + "execution: {n_cycles: 1, config_gap_s: 0, cycle_gap_s: 0, timeout_s: 900}\n")
    _, study_dir = run_study(tmp_path / "t1.yaml", ResultWriter(), output=tmp_path / "out",
                             no_gaps=True)
    run_study(tmp_path / "t2.yaml", ResultWriter(), resume=study_dir, cycles=2, no_gaps=True)
    runner = TimeoutRecorder()
    run_study(load_kept_study(study_dir), runner, resume=study_dir, cycles=3, no_gaps=True)
    assert runner.timeouts == [900], runner.timeouts


def test_a_hub_model_runs_the_pinned_commit_even_beside_a_folder_of_its_name(
        tmp_path, monkeypatch, hub):
    # `hf download org/tiny --local-dir org/tiny` in the folder llem runs from. The study file
    # (elsewhere) says model: org/tiny; the loader resolves paths against the study file's
    # folder, finds none, and pins the cached commit a... The local runner starts the harness
    # in the working directory, where models.locate takes ./org/tiny as a local directory:
    # the runs load the local copy, recorded as commit a.
    from harness import models
    from orchestrator.study import load_study

    hub_snapshot(hub, COMMIT_A)
    (tmp_path / "study").mkdir()
    path = hub_study(tmp_path / "study")
    local_model(tmp_path / "work" / "org" / "tiny", b"\x01" * 64)
    monkeypatch.chdir(tmp_path / "work")
    config = load_study(path).experiments[0].config
    assert config.model_digest == COMMIT_A
    assert models.locate(config.model, config.load_revision) == "hf_cache", \
        "the run loads ./org/tiny while its configuration records commit a of the hub model"


def test_a_project_moved_with_its_dataset_resumes_as_the_same_configuration(tmp_path):
    # The content digest says which workload ran; the absolute path says where it lay. After
    # `mv ~/proj ~/proj-old` (or on a second host, another mount point) the same bytes are
    # another configuration and the study can no longer be finished.
    import shutil

    project = tmp_path / "proj"
    project.mkdir()
    (project / "prompts.jsonl").write_text('{"prompt": "hello there"}\n')
    (project / "s.yaml").write_text(
        "name: s\nmodel: m\nbackend: pytorch\ndataset: ./prompts.jsonl\n"
        "execution: {n_cycles: 1, config_gap_s: 0, cycle_gap_s: 0}\n")
    _, study_dir = run_study(project / "s.yaml", ResultWriter(), output=tmp_path / "out",
                             no_gaps=True)
    shutil.move(project, tmp_path / "proj-old")
    summary, _ = run_study(tmp_path / "proj-old" / "s.yaml", ResultWriter(), resume=study_dir,
                           cycles=2, no_gaps=True)
    assert summary.counts.get("completed") == 2


def test_a_run_id_named_like_a_study_output_is_refused_not_made_a_folder(tmp_path):
    # check_runs refuses paths, hidden names and `sources`, not the names of the study's own
    # outputs: with no stats.json yet (every run failed), a run id `stats.json` becomes a run
    # folder, and stats.json can then never be written.
    import contextlib
    import json

    from harness.errors import ConfigError
    from orchestrator.schedule import plan
    from orchestrator.study import load_study

    path = tmp_path / "k.yaml"
    path.write_text("name: k\nmodel: m\nbackend: pytorch\n"
                    "execution: {n_cycles: 1, config_gap_s: 0, cycle_gap_s: 0}\n")
    (run_id,) = [run.run_id for run in plan(load_study(path))]
    _, study_dir = run_study(path, ResultWriter(fail=(run_id,)), output=tmp_path / "out",
                             no_gaps=True)
    assert not (study_dir / "stats.json").exists()
    manifest = json.loads((study_dir / "manifest.json").read_text())
    manifest["runs"][0]["run_id"] = "stats.json"  # a damaged or hand-edited manifest
    (study_dir / "manifest.json").write_text(json.dumps(manifest))
    with contextlib.suppress(ConfigError):
        run_study(path, ResultWriter(), resume=study_dir, no_gaps=True)
    assert not (study_dir / "stats.json").is_dir(), "a run folder took the name of stats.json"
