"""Fixtures shared by every test directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No test ever reaches the model hub: models are built locally (tiny_model_dir) or absent.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Unit tests first, then the rest, the Docker tests last (a stable sort: file order holds).

    ``make test`` builds the container image in the background meanwhile, so the workers reach
    the Docker tests with the image built instead of waiting for it.
    """
    def rank(item: pytest.Item) -> int:
        if "docker" in item.keywords:
            return 2
        return 0 if "tests/unit/" in item.nodeid else 1

    items.sort(key=rank)


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
