"""The backend catalog is the one declaration every other table derives from."""

from __future__ import annotations

import importlib
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from harness.backends import REGISTRY, backend_class
from harness.backends.base import Backend
from harness.errors import ConfigError
from harness.schema.catalog import BACKEND_NAMES, CATALOG, image_names
from harness.schema.config import SECTION_MODELS, ExperimentConfig
from harness.schema.config import Backend as BackendLiteral
from harness.schema.rules import RULES

ROOT = Path(__file__).resolve().parents[4]


def test_the_schema_literal_names_exactly_the_catalog() -> None:
    assert typing.get_args(BackendLiteral) == BACKEND_NAMES
    field = ExperimentConfig.model_fields["backend"].annotation
    assert typing.get_args(field) == BACKEND_NAMES


@pytest.mark.parametrize("entry", CATALOG, ids=lambda e: e.name)
def test_each_backend_has_its_typed_section(entry) -> None:
    model = SECTION_MODELS[entry.section]
    assert typing.get_args(ExperimentConfig.model_fields[entry.section].annotation) == (
        model, type(None))
    config = ExperimentConfig(model="m", backend=entry.name)
    assert isinstance(config.section(), model)


@pytest.mark.parametrize("entry", CATALOG, ids=lambda e: e.name)
def test_every_setting_the_catalog_names_is_a_field_of_the_section(entry) -> None:
    fields = SECTION_MODELS[entry.section].model_fields
    named = [entry.memory.batch_setting, *entry.memory.parallel_settings,
             *entry.path_settings]
    if entry.memory.fraction_setting:
        named.append(entry.memory.fraction_setting)
    assert [name for name in named if name not in fields] == []


@pytest.mark.parametrize("entry", CATALOG, ids=lambda e: e.name)
def test_the_implementation_path_is_a_backend_class(entry) -> None:
    cls = backend_class(entry.name)
    assert issubclass(cls, Backend)
    assert cls.name == entry.name
    assert REGISTRY[entry.name] == f"{cls.__module__.rsplit('.', 1)[0]}:{cls.__name__}"


def test_an_unknown_backend_suggests_the_closest_name() -> None:
    with pytest.raises(ConfigError, match="did you mean 'vllm'"):
        backend_class("vlm")


def test_rules_are_the_catalog_s() -> None:
    assert {entry.name: entry.rules for entry in CATALOG} == RULES


def test_gpu_only_backends_have_no_cpu_image_and_every_image_has_a_recipe() -> None:
    for entry in CATALOG:
        assert entry.gpu_only == (entry.cpu_image is None), entry.name
    for name in image_names():
        assert (ROOT / "images" / name / "Dockerfile").is_file(), name


def test_the_cpu_image_is_an_image_not_a_backend() -> None:
    assert "cpu" in image_names()
    assert "cpu" not in BACKEND_NAMES
    with pytest.raises(ConfigError):
        backend_class("cpu")


def test_the_docker_tables_derive_from_the_catalog() -> None:
    from orchestrator.runners.docker.images import IMAGE_NAMES
    from orchestrator.runners.docker.runner import CPU_IMAGES, DEFAULT_IMAGES

    assert image_names() == IMAGE_NAMES
    assert {e.name: f"llem/{e.image}:latest" for e in CATALOG} == DEFAULT_IMAGES
    assert CPU_IMAGES == {"pytorch": "llem/cpu:latest", "vllm": "llem/vllm-cpu:latest"}


def test_the_catalog_imports_nothing_heavy() -> None:
    # a fresh interpreter: what importing the catalog (and the schema through it) pulls in
    code = ("import sys, harness.schema.catalog, harness.schema.config; "
            "print(','.join(m for m in ('torch', 'vllm', 'tensorrt_llm', 'transformers') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    assert done.stdout.strip() == ""


@pytest.mark.parametrize("first", ["harness.schema.catalog", "harness.backends",
                                   "harness.schema.rules", "harness.backends.base"])
def test_any_import_order_works(first: str) -> None:
    code = f"import {first}; import harness.schema.config, harness.backends.base"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    assert importlib.import_module(first) is not None
