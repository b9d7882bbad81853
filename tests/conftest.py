"""Fixtures shared by every test directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No test ever reaches the model hub: models are built locally (tiny_model_dir) or absent.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


@pytest.fixture(autouse=True, scope="session")
def _digest_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests (and the CLI they start) keep file digests in a cache of their own, not the user's."""
    os.environ["LLEM_DIGEST_CACHE"] = str(tmp_path_factory.mktemp("digests") / "digests.json")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama-style model directory, built once per test session.

    Skips the requesting test when torch, transformers or tokenizers is not installed.
    """
    for module in ("torch", "transformers", "tokenizers"):
        pytest.importorskip(module)
    from harness.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model")
