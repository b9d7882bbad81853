"""A run is identified by (configuration hash, cycle); its folder name is only a label."""

from __future__ import annotations

from pathlib import Path

import pytest
from llem_testkit.cli import tree_digest
from llem_testkit.runners import ResultWriter
from llem_testkit.studies import write

from harness.errors import ConfigError
from orchestrator import run_study
from orchestrator.manifest import MANIFEST_NAME, Manifest
from orchestrator.study import load_study

HEAD = ("name: k\nmodel: m\nbackend: pytorch\n"
        "execution: {n_cycles: 1, cycle_order: interleaved, config_gap_s: 0, cycle_gap_s: 0}\n")


def study(tmp_path: Path, sweep: str, name: str) -> Path:
    return write(tmp_path, HEAD + "sweep:\n" + sweep, name)


def results(study_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(study_dir)): p.read_bytes()
            for p in sorted(study_dir.glob("*/result.json*"))}


def test_a_cosmetic_edit_that_renames_the_slugs_tops_up_without_a_key_error(tmp_path):
    # Before: KeyError after the manifest had been saved with the new run ids, and the
    # original study file then failed the same way.
    k1 = study(tmp_path, "  pytorch.batch_size: [1, 2]\n", "k1.yaml")
    k2 = study(tmp_path, "  pytorch.batch_size: [1, 2]\n  precision: [bf16]\n", "k2.yaml")
    assert load_study(k1).design_hash == load_study(k2).design_hash
    summary, study_dir = run_study(k1, ResultWriter(), output=tmp_path / "out", no_gaps=True)
    assert summary.counts == {"completed": 2}
    first = {(r.config_hash, r.cycle): r.run_id for r in Manifest.load(study_dir).runs}
    before = results(study_dir)

    runner = ResultWriter()
    summary, _ = run_study(k2, runner, resume=study_dir, cycles=2, no_gaps=True)

    assert summary.counts == {"completed": 4}
    assert sorted(spec.cycle for spec in runner.ran) == [2, 2]  # nothing completed re-ran
    runs = Manifest.load(study_dir).runs
    assert {(r.config_hash, r.cycle): r.run_id for r in runs if r.cycle == 1} == first
    # a top-up run is named after its configuration's existing runs
    assert sorted(r.run_id for r in runs if r.cycle == 2) == ["001_pytorch-bs1_c2",
                                                               "002_pytorch-bs2_c2"]
    assert {k: v for k, v in results(study_dir).items() if k in before} == before
    again, _ = run_study(k1, ResultWriter(), resume=study_dir, cycles=2, no_gaps=True)
    assert again.counts == {"completed": 4}


def test_swapped_sweep_values_keep_each_configuration_in_its_own_folders(tmp_path):
    k1 = study(tmp_path, "  pytorch.batch_size: [1, 2]\n", "k1.yaml")
    k2 = study(tmp_path, "  pytorch.batch_size: [2, 1]\n", "k2.yaml")
    _, study_dir = run_study(k1, ResultWriter(), output=tmp_path / "out", no_gaps=True)
    before = results(study_dir)
    runner = ResultWriter()
    run_study(k2, runner, resume=study_dir, cycles=2, no_gaps=True)
    assert {k: v for k, v in results(study_dir).items() if k in before} == before
    for entry in Manifest.load(study_dir).runs:
        result = (study_dir / entry.run_id / "result.json").read_text()
        assert f'"batch_size":{entry.run_id[2]}' in result.replace(" ", ""), entry.run_id


def test_a_top_up_never_names_a_run_after_a_folder_that_exists(tmp_path):
    k1 = study(tmp_path, "  pytorch.batch_size: [1]\n", "k1.yaml")
    _, study_dir = run_study(k1, ResultWriter(), output=tmp_path / "out", no_gaps=True)
    squatter = study_dir / "001_pytorch-bs1_c2"
    squatter.mkdir()
    (squatter / "notes.txt").write_text("mine")
    run_study(k1, ResultWriter(), resume=study_dir, cycles=2, no_gaps=True)
    assert (squatter / "notes.txt").read_text() == "mine"
    assert list(squatter.iterdir()) == [squatter / "notes.txt"]
    (top_up,) = [r for r in Manifest.load(study_dir).runs if r.cycle == 2]
    assert top_up.status == "completed" and top_up.run_id != squatter.name
    assert (study_dir / top_up.run_id / "result.json").is_file()


def test_a_manifest_listing_one_run_twice_is_refused_and_nothing_changes(tmp_path):
    k1 = study(tmp_path, "  pytorch.batch_size: [1]\n", "k1.yaml")
    runner = ResultWriter(fail=("001_pytorch-bs1_c1",))
    _, study_dir = run_study(k1, runner, output=tmp_path / "out", no_gaps=True)
    manifest = Manifest.load(study_dir)
    twin = manifest.runs[0].model_copy(update={"run_id": "009_twin_c1"})
    manifest.runs.append(twin)
    (study_dir / MANIFEST_NAME).write_text(manifest.model_dump_json())
    before = tree_digest(study_dir)
    with pytest.raises(ConfigError, match="lists the run .* twice"):
        run_study(k1, ResultWriter(), resume=study_dir, no_gaps=True)
    assert tree_digest(study_dir) == before


def test_a_refused_design_names_the_configurations_added_and_removed(tmp_path):
    k1 = study(tmp_path, "  pytorch.batch_size: [1, 2]\n", "k1.yaml")
    k2 = study(tmp_path, "  pytorch.batch_size: [3, 1]\n", "k2.yaml")
    _, study_dir = run_study(k1, ResultWriter(), output=tmp_path / "out", no_gaps=True)
    before = tree_digest(study_dir)
    with pytest.raises(ConfigError) as refused:
        run_study(k2, ResultWriter(), resume=study_dir, no_gaps=True)
    message = str(refused.value)
    assert "1 configuration(s) added (pytorch-bs3)" in message, message
    assert "1 removed or changed (pytorch-bs2)" in message, message
    assert tree_digest(study_dir) == before


def test_a_long_list_of_changes_is_cut_short_with_a_count(tmp_path):
    k1 = study(tmp_path, f"  pytorch.batch_size: {list(range(1, 21))}\n", "k1.yaml")
    k2 = study(tmp_path, f"  pytorch.batch_size: {list(range(21, 41))}\n", "k2.yaml")
    _, study_dir = run_study(k1, ResultWriter(), output=tmp_path / "out", no_gaps=True)
    with pytest.raises(ConfigError) as refused:
        run_study(k2, ResultWriter(), resume=study_dir, no_gaps=True)
    message = str(refused.value)
    assert "20 configuration(s) added (pytorch-bs21, pytorch-bs22, pytorch-bs23, " in message
    assert "and 15 more)" in message and len(message) < 1000, message


def test_a_directory_recording_an_earlier_design_hash_resumes_and_records_todays(tmp_path):
    # Design hashes used to depend on the order configurations were written in; resume
    # compares the configurations themselves, so such a directory still resumes.
    k1 = study(tmp_path, "  pytorch.batch_size: [1, 2]\n", "k1.yaml")
    _, study_dir = run_study(k1, ResultWriter(), output=tmp_path / "out", no_gaps=True)
    manifest = Manifest.load(study_dir)
    manifest.design_hash = "0123456789abcdef"
    (study_dir / MANIFEST_NAME).write_text(manifest.model_dump_json())
    summary, _ = run_study(k1, ResultWriter(), resume=study_dir, cycles=2, no_gaps=True)
    assert summary.counts == {"completed": 4}
    assert Manifest.load(study_dir).design_hash == load_study(k1).design_hash
    assert summary.design_hash == load_study(k1).design_hash


def test_a_changed_setting_outside_the_sweep_is_named_with_the_hashes(tmp_path):
    # The slugs are the same on both sides (n is not swept): the hashes tell them apart.
    k1 = study(tmp_path, "  pytorch.batch_size: [1]\n", "k1.yaml")
    k2 = write(tmp_path, "n: 7\n" + k1.read_text(), "k2.yaml")
    _, study_dir = run_study(k1, ResultWriter(), output=tmp_path / "out", no_gaps=True)
    old, new = (load_study(k).experiments[0].config.measurement_config_hash for k in (k1, k2))
    with pytest.raises(ConfigError) as refused:
        run_study(k2, ResultWriter(), resume=study_dir, no_gaps=True)
    assert (f"1 configuration(s) added (pytorch-bs1 [{new}]), 1 removed or changed "
            f"(pytorch-bs1 [{old}])") in str(refused.value)
