"""One rule for "this hub model is complete in the cache", shared by preflight and llem fetch.

harness/models.py decides it; an interrupted sharded download (one shard of two on disk, the
repository listing that huggingface_hub cached while downloading naming both) is missing for
preflight (bad input before any run) and for ``llem fetch`` (which fetches it again).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import models
from harness.errors import ConfigError
from orchestrator import fetch
from orchestrator.fetch import HubModel
from orchestrator.preflight import model_problems
from orchestrator.study import load_study

REPO = "org/sharded"
COMMIT = "d" * 40
SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
FILES = ("config.json", "tokenizer.json", "model.safetensors.index.json", *SHARDS)


def snapshot(cache: Path, on_disk: tuple[str, ...], listed: tuple[str, ...] | None) -> None:
    """``REPO`` at ``COMMIT`` (ref main) holding ``on_disk``; ``listed``: the cached listing."""
    repo_dir = cache / f"models--{REPO.replace('/', '--')}"
    folder = repo_dir / "snapshots" / COMMIT
    folder.mkdir(parents=True)
    for name in on_disk:
        (folder / name).write_text("{}")
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(COMMIT)
    if listed is not None:
        (repo_dir / "trees").mkdir()
        entries = {name: {"size": 2, "blob_id": f"{i:040x}"} for i, name in enumerate(listed)}
        (repo_dir / "trees" / f"{COMMIT}.json").write_text(
            json.dumps({"format_version": 1, "files": entries}))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The default hub cache, under tmp_path."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def preflight(tmp_path: Path) -> list[str]:
    study = tmp_path / "s.yaml"
    study.write_text(f"model: {REPO}\nbackend: pytorch\nn: 2\n")
    return model_problems(load_study(study))


def fetched_again(monkeypatch: pytest.MonkeyPatch) -> list[HubModel]:
    """The models ``fetch_missing`` downloads (the download itself recorded, not done)."""
    wanted: list[HubModel] = []
    monkeypatch.setattr(fetch, "offline_by_environment", lambda: False)
    monkeypatch.setattr(fetch, "fetch", lambda model: wanted.append(model) or Path())
    fetch.fetch_missing([HubModel(REPO, None)], lambda line: None)
    return wanted


def test_an_interrupted_sharded_fetch_is_not_in_the_cache(cache, tmp_path, monkeypatch):
    snapshot(cache, on_disk=FILES[:-1], listed=FILES)
    assert models.cache_gaps(REPO) == [f"listed files ({SHARDS[1]})"]
    assert not models.in_cache(REPO)
    [problem] = preflight(tmp_path)
    assert f"model '{REPO}' at revision 'main' (commit {COMMIT}) is incomplete" in problem
    assert SHARDS[1] in problem and "llem fetch" in problem
    assert fetched_again(monkeypatch) == [HubModel(REPO, None)]


def test_every_listed_shard_on_disk_is_in_the_cache(cache, tmp_path, monkeypatch):
    snapshot(cache, on_disk=FILES, listed=(*FILES, "README.md", "pytorch_model.bin"))
    assert models.in_cache(REPO)  # files inference does not read are not needed
    assert preflight(tmp_path) == []
    assert fetched_again(monkeypatch) == []


def test_without_a_listing_config_weights_and_tokenizer_suffice(cache, tmp_path):
    snapshot(cache, on_disk=FILES[:-1], listed=None)  # placed by another tool: nothing to check
    assert models.in_cache(REPO) and preflight(tmp_path) == []


def test_a_model_the_cache_lacks_is_not_there_for_either(cache, tmp_path, monkeypatch):
    [problem] = preflight(tmp_path)
    assert f"model '{REPO}' at revision 'main' is not in the Hugging Face cache" in problem
    monkeypatch.setattr(fetch, "offline_by_environment", lambda: True)
    with pytest.raises(ConfigError, match="is not in the Hugging Face cache"):
        fetch.fetch_missing([HubModel(REPO, None)], lambda line: None)


def test_the_hub_cache_is_huggingface_hubs_own(cache):
    assert models.hub_cache() == cache


def test_runs_get_the_cache_that_fetch_fills(cache, monkeypatch):
    """huggingface_hub also honours XDG_CACHE_HOME: the Docker runner mounts its choice, not
    one rebuilt from HF_HUB_CACHE and HF_HOME by hand."""
    from orchestrator.runners.docker.plan import MachineSettings

    for name in ("HF_HUB_CACHE", "HF_HOME"):
        monkeypatch.delenv(name, raising=False)
    cache.mkdir()
    assert MachineSettings.detect().hf_cache == cache
