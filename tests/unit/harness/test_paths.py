from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.paths import create_unique_dir, inside, sanitize


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("demo", "demo"),
        ("../../etc/passwd", "etc-passwd"),
        ("my study / v2", "my-study-v2"),
        ("...", "unnamed"),
        ("a" * 200, "a" * 80),
        ("étude énergie", "etude-energie"),
        ("Straße Ærø Łódź", "Strasse-AEro-Lodz"),
        ("ｆｕｌｌ width", "full-width"),
        ("能耗", "unnamed"),
    ],
)
def test_sanitize(text, expected):
    assert sanitize(text) == expected


def test_unique_dir_gets_suffixes_and_never_reuses(tmp_path):
    first = create_unique_dir(tmp_path, "study")
    second = create_unique_dir(tmp_path, "study")
    third = create_unique_dir(tmp_path, "study")
    assert [first.name, second.name, third.name] == ["study", "study_1", "study_2"]


def test_unique_dir_cannot_escape_root(tmp_path):
    made = create_unique_dir(tmp_path / "root", "../../outside")
    assert made.parent == tmp_path / "root"
    with pytest.raises(ConfigError, match="would leave the output root"):
        inside(tmp_path / "root", tmp_path / "root" / ".." / "x")


def test_a_single_experiment_file_takes_relative_paths_from_its_own_folder(tmp_path,
                                                                           monkeypatch):
    from harness.__main__ import _resolve

    folder = tmp_path / "studies"
    (folder / "models" / "tiny").mkdir(parents=True)
    (folder / "prompts.jsonl").write_text('{"prompt": "hi"}\n')
    (folder / "adapter").mkdir()
    (folder / "one.yaml").write_text("model: models/tiny\nbackend: pytorch\n"
                                     "dataset: prompts.jsonl\nlora: {adapter: ./adapter}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    spec, _ = _resolve(Path("../studies/one.yaml"), tmp_path / "out")
    assert spec.config.model == str((folder / "models" / "tiny").resolve())
    assert spec.config.dataset == str((folder / "prompts.jsonl").resolve())
    assert spec.config.lora is not None
    assert spec.config.lora.adapter == str((folder / "adapter").resolve())


def test_hub_ids_and_built_in_datasets_are_no_paths(tmp_path):
    from harness.paths import local_adapter_path, local_input_paths

    assert local_input_paths("org/name", "llem-prompts-v1", tmp_path, tmp_path) == {}
    assert local_adapter_path("org/adapter", tmp_path) is None
    assert local_input_paths("~/m", "synthetic", tmp_path, tmp_path) == {
        "model": str((Path.home() / "m").resolve())}
