"""Reading a versioned JSON file back: bad files are bad input naming file and versions.

The manifest serves as the example of a host-read file.
"""

from __future__ import annotations

import json

import pytest

from harness.errors import ConfigError
from harness.schema.reading import SchemaVersionError, UnreadableFileError, read_model
from harness.schema.run_spec import RunSpec
from orchestrator.manifest import Manifest

MANIFEST = {"schema_version": "1", "study": "s", "design_hash": "h", "runner": "local",
            "cycle_order": "interleaved",
            "runs": [{"run_id": "001_a_c1", "config_hash": "c", "cycle": 1, "slug": "a",
                      "backend": "pytorch"}]}


def write(tmp_path, text):
    path = tmp_path / "manifest.json"
    path.write_text(text)
    return path


def test_a_valid_manifest_loads_and_an_old_one_without_executed_still_does(tmp_path):
    manifest = read_model(write(tmp_path, json.dumps(MANIFEST)), Manifest)
    assert manifest.runs[0].run_id == "001_a_c1" and manifest.executed == []


def test_truncated_json_names_the_file_and_the_line(tmp_path):
    path = write(tmp_path, json.dumps(MANIFEST, indent=1)[:80])
    with pytest.raises(UnreadableFileError) as caught:
        read_model(path, Manifest)
    assert isinstance(caught.value, ConfigError)  # bad input: exit code 2
    assert str(path) in caught.value.message
    assert "is not valid JSON (truncated or damaged?): line" in caught.value.message
    assert caught.value.fix


def test_a_newer_schema_version_names_found_and_expected(tmp_path):
    path = write(tmp_path, json.dumps({**MANIFEST, "schema_version": "2", "new_field": 1}))
    with pytest.raises(SchemaVersionError) as caught:
        read_model(path, Manifest)
    assert caught.value.message == (f"{path} has schema version 2; this llem reads version 1")


def test_a_schema_mismatch_names_the_first_problem_and_counts_the_rest(tmp_path):
    runs = [{**MANIFEST["runs"][0], "status": "exploded", "cycle": "x"}]
    path = write(tmp_path, json.dumps({**MANIFEST, "runs": runs}))
    with pytest.raises(UnreadableFileError, match=r"does not match schema version 1: "
                                                  r"runs\.0\.cycle: .*\(and 1 more\)"):
        read_model(path, Manifest)


@pytest.mark.parametrize("text", ["[1, 2]", "{}", '{"schema_version": null}'])
def test_a_file_without_a_schema_version_is_not_taken_for_ours(tmp_path, text):
    with pytest.raises(UnreadableFileError, match="has no schema_version .expected version 1"):
        read_model(write(tmp_path, text), Manifest)


def test_a_missing_file_says_so(tmp_path):
    with pytest.raises(UnreadableFileError, match=r"manifest.json is missing"):
        read_model(tmp_path / "manifest.json", Manifest)


def test_experiment_json_reads_through_the_same_helper(tmp_path):
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps({"schema_version": "3", "run_id": "r",
                                "config": {"model": "m", "backend": "pytorch"}}))
    with pytest.raises(SchemaVersionError, match="experiment.json has schema version 3"):
        read_model(path, RunSpec)
