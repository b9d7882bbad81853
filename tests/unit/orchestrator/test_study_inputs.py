"""A configuration's identity covers the content of its local dataset and model, and relative
paths resolve against the study file's directory, wherever llem runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from llem_testkit.runners import ResultWriter

from harness.errors import ConfigError
from orchestrator import run_study
from orchestrator.study import load_study
from orchestrator.study_dir import open_study_dir

PROMPTS = '{"prompt": "hello there"}\n{"prompt": "how are you"}\n'


def study_with_dataset(folder: Path, dataset: str = "prompts.jsonl") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "s.yaml"
    path.write_text(f"name: d\nmodel: m\nbackend: pytorch\ndataset: {dataset}\n"
                    "execution: {n_cycles: 1, config_gap_s: 0, cycle_gap_s: 0}\n")
    return path


def only_config(path: Path):
    (entry,) = load_study(path).experiments
    return entry.config


def test_an_edited_jsonl_changes_the_configuration_identity(tmp_path):
    path = study_with_dataset(tmp_path)
    (tmp_path / "prompts.jsonl").write_text(PROMPTS)
    before = load_study(path)
    (tmp_path / "prompts.jsonl").write_text(PROMPTS + '{"prompt": "one more"}\n')
    after = load_study(path)
    old, new = before.experiments[0].config, after.experiments[0].config
    assert old.dataset_sha256 is not None and old.dataset_sha256 != new.dataset_sha256
    assert old.measurement_config_hash != new.measurement_config_hash
    assert before.design_hash != after.design_hash


def test_a_relative_dataset_resolves_against_the_study_file_not_the_working_directory(
        tmp_path, monkeypatch):
    path = study_with_dataset(tmp_path / "study")
    (tmp_path / "study" / "prompts.jsonl").write_text(PROMPTS)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "prompts.jsonl").write_text('{"prompt": "something else"}\n')
    monkeypatch.chdir(tmp_path / "elsewhere")
    from_elsewhere = only_config(Path("../study/s.yaml"))
    monkeypatch.chdir(tmp_path / "study")
    from_beside = only_config(Path("s.yaml"))
    assert from_elsewhere.dataset == str((tmp_path / "study" / "prompts.jsonl").resolve())
    assert from_elsewhere.measurement_config_hash == from_beside.measurement_config_hash
    assert path.exists()


def test_a_local_model_directory_is_identified_by_its_content(tmp_path):
    model = tmp_path / "models" / "tiny"
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"hidden_size": 8}')
    (model / "model.safetensors").write_bytes(b"w" * 10)
    path = tmp_path / "s.yaml"
    path.write_text("model: models/tiny\nbackend: pytorch\n")
    first = only_config(path)
    assert first.model == str(model.resolve())
    assert first.model_digest is not None and first.model_digest.startswith("local-files-sha256:")
    (model / "config.json").write_text('{"hidden_size": 16}')
    assert only_config(path).measurement_config_hash != first.measurement_config_hash


def test_a_hub_id_is_left_as_written_and_needs_no_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = tmp_path / "s.yaml"
    path.write_text("model: org/never-downloaded\nbackend: pytorch\n")
    config = only_config(path)
    assert config.model == "org/never-downloaded" and config.model_digest is None
    assert config.dataset_sha256 is None


def test_resume_refuses_a_study_whose_dataset_changed_and_names_the_file(tmp_path):
    path = study_with_dataset(tmp_path)
    (tmp_path / "prompts.jsonl").write_text(PROMPTS)
    with open_study_dir(load_study(path), "local", output_root=tmp_path / "out") as opened:
        study_dir = opened.path
    manifest_before = (study_dir / "manifest.json").read_bytes()
    (tmp_path / "prompts.jsonl").write_text(PROMPTS.replace("hello", "bye"))
    with pytest.raises(ConfigError) as refused, open_study_dir(
            load_study(path), "local", resume_dir=study_dir):
        pass
    assert "prompts.jsonl" in str(refused.value) and "content" in str(refused.value)
    assert (study_dir / "manifest.json").read_bytes() == manifest_before


def test_a_pinned_digest_that_the_file_does_not_match_is_refused(tmp_path):
    from orchestrator.study import StudyFileError

    path = study_with_dataset(tmp_path)
    (tmp_path / "prompts.jsonl").write_text(PROMPTS)
    path.write_text(path.read_text() + f"dataset_sha256: {'a' * 64}\n")
    with pytest.raises(StudyFileError) as refused:
        load_study(path)
    assert "prompts.jsonl" in str(refused.value) and "dataset_sha256" in str(refused.value)


def test_existing_hashes_do_not_move_for_configs_without_local_inputs(tmp_path):
    from harness.schema.config import ExperimentConfig

    config = ExperimentConfig(model="m", backend="pytorch")
    assert "dataset_sha256" not in json.loads(config.canonical_json())
    assert "model_digest" not in json.loads(config.canonical_json())


@pytest.mark.parametrize("name_the_copy", [False, True])
def test_the_study_directory_copy_reads_the_files_beside_the_original(tmp_path, monkeypatch,
                                                                      name_the_copy):
    from orchestrator.cli import _load

    path = study_with_dataset(tmp_path / "study")
    (tmp_path / "study" / "prompts.jsonl").write_text(PROMPTS)
    original = load_study(path)
    with open_study_dir(original, "local", output_root=tmp_path / "out") as opened:
        study_dir = opened.path
    monkeypatch.chdir(tmp_path)
    resumed = _load(study_dir / "study.yaml" if name_the_copy else None, study_dir)
    assert resumed.design_hash == original.design_hash
    assert resumed.experiments[0].config.dataset == original.experiments[0].config.dataset


def test_resume_after_a_same_size_weight_edit_is_refused_naming_the_file(tmp_path):
    model = tmp_path / "tiny"
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": 8}')
    (model / "model.safetensors").write_bytes(b"\x00" * 64)
    path = tmp_path / "s.yaml"
    path.write_text("name: m\nmodel: ./tiny\nbackend: pytorch\n"
                    "execution: {n_cycles: 1, config_gap_s: 0, cycle_gap_s: 0}\n")
    _, study_dir = run_study(path, ResultWriter(), output=tmp_path / "out", no_gaps=True)
    (model / "model.safetensors").write_bytes(b"\x01" * 64)
    with pytest.raises(ConfigError, match=r"files changed, added or removed: model\.safetensors"):
        run_study(path, ResultWriter(), resume=study_dir, cycles=2, no_gaps=True)


def cache_hub_model(hub: Path, commit: str, refs: tuple[str, ...] = ("main",)) -> None:
    """org/tiny's snapshot at ``commit`` in a Hugging Face cache, ``refs`` pointing at it."""
    repo = hub / "models--org--tiny"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text('{"model_type": "llama"}')


@pytest.fixture
def hub(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def hub_study(folder: Path, extra: str = "") -> Path:
    path = folder / "h.yaml"
    path.write_text(f"name: h\nmodel: org/tiny\nbackend: pytorch\n{extra}")
    return path


def test_a_cached_hub_model_at_a_branch_is_pinned_to_the_commit_the_cache_holds(tmp_path, hub):
    from harness.schema.config import ExperimentConfig
    from orchestrator.study.inputs import unpinned_hub_models

    uncached = only_config(hub_study(tmp_path))
    assert uncached.model_digest is None and unpinned_hub_models([uncached])
    cache_hub_model(hub, "a" * 40)
    cache_hub_model(hub, "b" * 40, refs=("v2",))
    main = only_config(hub_study(tmp_path))
    assert main.model_digest == "a" * 40 and not unpinned_hub_models([main])
    assert only_config(hub_study(tmp_path, "revision: v2\n")).model_digest == "b" * 40
    # the hash of a hub model not cached when the study is loaded is the one it always had
    assert uncached.measurement_config_hash == ExperimentConfig(
        model="org/tiny", backend="pytorch").measurement_config_hash


def test_a_hub_model_at_a_commit_needs_no_digest(tmp_path, hub):
    cache_hub_model(hub, "a" * 40)
    config = only_config(hub_study(tmp_path, f"revision: {'a' * 40}\n"))
    assert config.model_digest is None
    assert "model_digest" not in json.loads(config.canonical_json())


def test_a_hub_commit_written_in_the_study_that_the_cache_does_not_hold_is_refused(tmp_path,
                                                                                   hub):
    from orchestrator.study import StudyFileError

    cache_hub_model(hub, "b" * 40)
    with pytest.raises(StudyFileError, match="org/tiny at main in the Hugging Face cache"):
        load_study(hub_study(tmp_path, f"model_digest: {'a' * 40}\n"))


def test_a_study_whose_model_digest_an_older_llem_took_is_refused_saying_so(tmp_path):
    model = tmp_path / "tiny"
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": 8}')
    path = tmp_path / "s.yaml"
    path.write_text("name: m\nmodel: ./tiny\nbackend: pytorch\n"
                    "execution: {n_cycles: 1, config_gap_s: 0, cycle_gap_s: 0}\n")
    _, study_dir = run_study(path, ResultWriter(), output=tmp_path / "out", no_gaps=True)
    manifest = json.loads((study_dir / "manifest.json").read_text())
    manifest["inputs"][str(model.resolve())] = "local-sha256:" + "0" * 64  # names and sizes
    (study_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="taken by an older llem, from file names and sizes"):
        run_study(path, ResultWriter(), resume=study_dir, cycles=2, no_gaps=True)


def study_with_adapter(folder: Path, lora: str = "{adapter: ./adapter}") -> Path:
    model = folder / "tiny"
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"hidden_size": 8}')
    (model / "model.safetensors").write_bytes(b"\x00" * 64)
    adapter = folder / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    (adapter / "adapter_model.safetensors").write_bytes(b"\x00" * 64)
    path = folder / "l.yaml"
    path.write_text(f"name: l\nmodel: ./tiny\nbackend: pytorch\nlora: {lora}\n"
                    "execution: {n_cycles: 1, config_gap_s: 0, cycle_gap_s: 0}\n")
    return path


def test_a_hub_lora_adapter_is_left_as_written_unpinned_and_keeps_its_hash(tmp_path):
    from harness.schema.config import ExperimentConfig

    path = study_with_adapter(tmp_path, "{adapter: org/some-adapter}")
    lora = only_config(path).lora
    assert lora is not None and lora.adapter == "org/some-adapter" and lora.adapter_digest is None
    written = ExperimentConfig(model="m", backend="pytorch", lora={"adapter": "org/a"})
    assert "adapter_digest" not in json.loads(written.canonical_json())["lora"]


def test_resume_after_a_retrained_adapter_is_refused_naming_it(tmp_path):
    path = study_with_adapter(tmp_path)
    _, study_dir = run_study(path, ResultWriter(), output=tmp_path / "out", no_gaps=True)
    adapter = str((tmp_path / "adapter").resolve())
    assert adapter in json.loads((study_dir / "manifest.json").read_text())["inputs"]
    (tmp_path / "adapter" / "adapter_model.safetensors").write_bytes(b"\x01" * 64)
    with pytest.raises(ConfigError, match=r"adapter_model\.safetensors") as refused:
        run_study(path, ResultWriter(), resume=study_dir, cycles=2, no_gaps=True)
    assert adapter in str(refused.value)


def test_a_pinned_adapter_digest_that_the_adapter_does_not_match_is_refused(tmp_path):
    from orchestrator.study import StudyFileError

    path = study_with_adapter(tmp_path, "{adapter: ./adapter, adapter_digest: x}")
    with pytest.raises(StudyFileError, match=r"lora\.adapter_digest x does not match"):
        load_study(path)


def test_a_moved_dataset_or_adapter_is_identified_by_its_digest_and_name_not_its_path(
        tmp_path):
    import shutil

    path = study_with_adapter(tmp_path / "proj")
    (tmp_path / "proj" / "prompts.jsonl").write_text(PROMPTS)
    path.write_text(path.read_text() + "dataset: ./prompts.jsonl\n")
    shutil.copytree(tmp_path / "proj", tmp_path / "moved")
    before = json.loads(only_config(path).canonical_json())
    after = json.loads(only_config(tmp_path / "moved" / "l.yaml").canonical_json())
    assert (after["dataset"], after["lora"]) == (before["dataset"], before["lora"])
    assert after["dataset"] == "prompts.jsonl" and after["lora"]["adapter"] == "adapter"
    # A local model directory is still identified by its path too (docs/studies.md).
    assert after["model"] != before["model"]
