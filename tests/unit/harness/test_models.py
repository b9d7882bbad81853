"""A checkpoint is found offline at the revision asked for: a local directory or the HF cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import models
from harness.errors import PreflightError
from orchestrator.estimate import find_config

MAIN_COMMIT = "a" * 40
V2_COMMIT = "b" * 40


def write_snapshot(cache: Path, repo: str, commit: str, refs: list[str],
                   files: dict[str, str]) -> Path:
    """One snapshot in the Hugging Face cache layout (what ``hf download`` leaves behind)."""
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, text in files.items():
        (snapshot / name).write_text(text)
    (repo_dir / "refs").mkdir(exist_ok=True)
    for ref in refs:
        (repo_dir / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path: Path) -> Path:
    """org/tiny at two revisions: main (4 layers, complete), branch v2 (8 layers, config only)."""
    cache = tmp_path / "hub"
    write_snapshot(cache, "org/tiny", MAIN_COMMIT, ["main"],
                   {"config.json": json.dumps({"num_hidden_layers": 4}),
                    "model.safetensors": "", "tokenizer.json": "{}"})
    write_snapshot(cache, "org/tiny", V2_COMMIT, ["v2"],
                   {"config.json": json.dumps({"num_hidden_layers": 8})})
    return cache


def test_find_config_honours_the_revision(hub_cache: Path) -> None:
    assert find_config("org/tiny", cache_dir=hub_cache) == {"num_hidden_layers": 4}
    assert find_config("org/tiny", "v2", cache_dir=hub_cache) == {"num_hidden_layers": 8}
    assert find_config("org/tiny", V2_COMMIT, cache_dir=hub_cache) == {"num_hidden_layers": 8}


def test_find_config_of_a_revision_not_in_the_cache_is_unknown(hub_cache: Path) -> None:
    assert find_config("org/tiny", "v3", cache_dir=hub_cache) is None
    assert find_config("org/absent", cache_dir=hub_cache) is None


def test_directory_is_the_snapshot_of_the_revision(hub_cache: Path) -> None:
    found = models.directory("org/tiny", None, cache_dir=hub_cache)
    assert found.name == MAIN_COMMIT
    assert models.resolved_revision(found) == MAIN_COMMIT


def test_a_revision_without_weights_is_not_available_offline(hub_cache: Path) -> None:
    # v2 has a config.json but no weights or tokenizer: runs would fail, so preflight says so
    assert models.locate("org/tiny", None, cache_dir=hub_cache) == "hf_cache"
    with pytest.raises(PreflightError) as caught:
        models.locate("org/tiny", "v2", cache_dir=hub_cache)
    assert "at revision v2" in caught.value.message
    assert "without weights" in caught.value.message
    assert "and without tokenizer files" in caught.value.message
    assert caught.value.fix is not None and "hf download org/tiny --revision v2" in caught.value.fix


def test_a_revision_the_cache_lacks_says_how_to_fetch_it(hub_cache: Path) -> None:
    with pytest.raises(PreflightError) as caught:
        models.locate("org/tiny", "v3", cache_dir=hub_cache)
    assert "neither a local directory nor in the Hugging Face cache" in caught.value.message
    assert caught.value.fix is not None and "hf download org/tiny --revision v3" in caught.value.fix


def test_a_local_directory_without_a_tokenizer_is_named(tiny_model_dir: Path,
                                                          tmp_path: Path) -> None:
    copy = tmp_path / "no-tokenizer"
    copy.mkdir()
    for name in ("config.json", "model.safetensors"):
        (copy / name).write_bytes((tiny_model_dir / name).read_bytes())
    with pytest.raises(PreflightError, match=r"has no tokenizer files \(tokenizer.json or"):
        models.locate(str(copy))


def test_a_local_directory_is_itself(tiny_model_dir: Path) -> None:
    assert models.locate(str(tiny_model_dir)) == "local_directory"
    assert models.directory(str(tiny_model_dir)) == tiny_model_dir.resolve()
    assert models.resolved_revision(tiny_model_dir).startswith("local-files-sha256:")


def test_a_missing_path_names_the_directory(tmp_path: Path) -> None:
    with pytest.raises(PreflightError, match="does not exist"):
        models.locate(str(tmp_path / "nowhere"))


def test_parameter_counts_come_from_the_safetensors_headers(tiny_model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    total, non_embedding = models.parameter_counts(tiny_model_dir)
    # the safetensors file holds each tied tensor once, as the module's parameters() do
    assert total == sum(p.numel() for p in model.parameters())
    assert 0 < non_embedding < total
