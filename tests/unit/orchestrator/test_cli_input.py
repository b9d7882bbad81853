"""Bad input is refused before anything runs: exit 2, one message with its fix, nothing written.

Each test runs ``llem`` as a subprocess, as a user would.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from llem_testkit.cli import llem, tree_digest
from llem_testkit.studies import write

EXIT_BAD_INPUT = 2


def local_model(tmp_path: Path) -> Path:
    """A model directory that preflight accepts (config, weights, tokenizer; never loaded)."""
    model = tmp_path / "model"
    model.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (model / name).write_text("{}")
    return model


def one_run_study(tmp_path: Path, extra: str = "") -> Path:
    local_model(tmp_path)
    return write(tmp_path, "model: ./model\nbackend: pytorch\nn: 2\n"
                 "execution: {n_cycles: 1, config_gap_s: 0, cycle_gap_s: 0}\n" + extra,
                 name="s.yaml")


def refused(done, *phrases: str) -> None:
    assert done.returncode == EXIT_BAD_INPUT, done.stderr
    for phrase in phrases:
        assert phrase in done.stderr, done.stderr
    assert "fix:" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("lines", "phrase"), [
    (None, "prompts.jsonl does not exist"),
    ('{"prompt": "hi"}\n{"promt": "typo"}\n', "prompts.jsonl, line 2: unknown key 'promt'"),
])
def test_a_bad_jsonl_dataset_is_refused_before_any_run(tmp_path, lines, phrase):
    if lines is not None:
        (tmp_path / "prompts.jsonl").write_text(lines)
    one_run_study(tmp_path, "dataset: ./prompts.jsonl\n")
    done = llem("run", "s.yaml", "--runner", "local", "--output", "o", cwd=tmp_path)
    refused(done, phrase)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("sweep", [
    "  pytorch.batch_size: [1, 8]\n  pytorch:\n    - {attn_implementation: sdpa}\n"
    "    - {batch_size: 4}\n",
    "  pytorch:\n    - {attn_implementation: sdpa}\n    - {batch_size: 4}\n"
    "  pytorch.batch_size: [1, 8]\n",
])
def test_two_sweep_keys_setting_the_same_value_are_refused_naming_both_lines(tmp_path, sweep):
    one_run_study(tmp_path, "sweep:\n" + sweep)
    lines = (tmp_path / "s.yaml").read_text().splitlines()
    dotted = next(n for n, line in enumerate(lines, 1) if "pytorch.batch_size" in line)
    entry = next(n for n, line in enumerate(lines, 1) if "{batch_size: 4}" in line)
    done = llem("run", "s.yaml", "--runner", "local", "--output", "o", cwd=tmp_path)
    refused(done, "pytorch.batch_size", f"line {dotted}", f"line {entry}")
    assert not (tmp_path / "o").exists()


BASE = """\
model: ./model
backend: [pytorch, vllm]
n: 2
vllm: {max_num_seqs: 64}
execution: {n_cycles: 1, config_gap_s: 0, cycle_gap_s: 0}
sweep:
  precision: [bf16, fp16]
  vllm.max_num_seqs: [64, 256]
"""


def test_a_child_study_narrows_its_base_backends_with_null(tmp_path):
    import json

    local_model(tmp_path)
    write(tmp_path, BASE, name="base.yaml")
    write(tmp_path, "base: base.yaml\nbackend: pytorch\nvllm: null\nsweep: {vllm: null}\n",
          name="child.yaml")
    done = llem("run", "child.yaml", "--dry-run", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert [run["backend"] for run in plan["runs"]] == ["pytorch", "pytorch"]


@pytest.mark.parametrize(("gpus", "phrase"), [
    ("-1", "--gpus '-1'"), ("", "--gpus ''"), (" , ", "--gpus ' , '"), ("0,0", "--gpus '0,0'"),
    ("a", "--gpus 'a'"),
])
def test_gpus_that_name_no_valid_device_list_are_refused(tmp_path, gpus, phrase):
    one_run_study(tmp_path)
    done = llem("run", "s.yaml", "--runner", "local", "--output", "o", "--gpus", gpus,
                cwd=tmp_path)
    refused(done, phrase)
    assert not (tmp_path / "o").exists()


def two_config_study(tmp_path: Path) -> Path:
    return one_run_study(tmp_path, "sweep:\n  pytorch.batch_size: [1, 2]\n")


def test_cycles_beyond_the_run_limit_are_refused_for_a_new_study(tmp_path):
    two_config_study(tmp_path)
    done = llem("run", "s.yaml", "--runner", "local", "--output", "o", "--cycles", "50001",
                "--yes", cwd=tmp_path, timeout=60)
    refused(done, "--cycles 50001", "100,002 runs", "limit is 100,000", "at most 50,000")
    assert not (tmp_path / "o").exists()


def test_a_top_up_beyond_the_run_limit_is_refused_and_changes_nothing(tmp_path):
    from orchestrator.study import load_study
    from orchestrator.study_dir import open_study_dir

    with open_study_dir(load_study(two_config_study(tmp_path)), "local",
                        output_root=tmp_path / "o") as opened:
        study_dir = opened.path
    before = tree_digest(study_dir)
    done = llem("run", "--resume", str(study_dir), "--runner", "local", "--cycles", "50001",
                "--yes", cwd=tmp_path, timeout=60)
    refused(done, "--cycles 50001", "limit is 100,000")
    assert tree_digest(study_dir) == before


def study_dir_with_one_run_done(tmp_path: Path) -> Path:
    """A study directory of two configurations x one cycle whose first run completed."""
    from llem_testkit.results import fake_result

    from harness.schema.run_spec import RunSpec
    from orchestrator.study import load_study
    from orchestrator.study_dir import open_study_dir, save_manifest

    study = load_study(two_config_study(tmp_path))
    with open_study_dir(study, "local", output_root=tmp_path / "o") as opened:
        run, entry = opened.runs[0], opened.manifest.runs[0]
        spec = RunSpec(run_id=run.run_id, cycle=run.cycle, runner="local",
                       config=run.entry.config)
        (opened.path / run.run_id).mkdir()
        (opened.path / run.run_id / "result.json").write_text(
            fake_result(spec, 100.0).model_dump_json())
        entry.status, entry.result_path = "completed", f"{run.run_id}/result.json"
        save_manifest(opened.path, opened.manifest)
        return opened.path


def test_resume_dry_run_lists_only_what_would_run_and_writes_nothing(tmp_path):
    import json

    study_dir = study_dir_with_one_run_done(tmp_path)
    before = tree_digest(study_dir)
    done = llem("run", "--resume", str(study_dir), "--dry-run", "--json", "--cycles", "2",
                cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    shown = [run["run_id"] for run in json.loads(done.stdout)["runs"]]
    assert shown == ["002_pytorch-bs2_c1", "001_pytorch-bs1_c2", "002_pytorch-bs2_c2"]
    table = llem("run", "--resume", str(study_dir), "--dry-run", cwd=tmp_path, timeout=60)
    assert table.returncode == 0, table.stderr
    assert "002_pytorch-bs2_c1" in table.stdout and "001_pytorch-bs1_c1" not in table.stdout
    assert "1 of 2 runs to do" in table.stdout
    assert tree_digest(study_dir) == before


def test_resume_dry_run_refuses_a_study_file_of_another_design(tmp_path):
    study_dir = study_dir_with_one_run_done(tmp_path)
    before = tree_digest(study_dir)
    other = write(tmp_path, (tmp_path / "s.yaml").read_text().replace("[1, 2]", "[1, 4]"),
                  name="other.yaml")
    done = llem("run", str(other), "--resume", str(study_dir), "--dry-run", cwd=tmp_path,
                timeout=60)
    refused(done, "differs from the study in")
    assert tree_digest(study_dir) == before


@pytest.mark.parametrize("manifest", [
    None, '{"name": "my-web-app", "start_url": "/"}', '{"schema_version": "1", "study": '])
def test_resume_of_a_folder_that_is_not_a_study_writes_nothing_into_it(tmp_path, manifest):
    study = one_run_study(tmp_path)
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "study.yaml").write_text(study.read_text())
    if manifest is not None:
        (folder / "manifest.json").write_text(manifest)
    before = sorted(p.name for p in folder.iterdir()), tree_digest(folder)
    for args in (["--resume", "photos"], ["s.yaml", "--resume", "photos"]):
        done = llem("run", *args, "--runner", "local", cwd=tmp_path, timeout=60)
        refused(done, "manifest.json")
        assert (sorted(p.name for p in folder.iterdir()), tree_digest(folder)) == before


@pytest.mark.parametrize("run_id", ["../victim", "", ".", "..", "/tmp/elsewhere", "a/b",
                                    ".baseline-cache", "sources"])
def test_a_run_folder_that_is_not_a_plain_folder_of_the_study_is_refused(tmp_path, run_id):
    # A damaged or hand-edited manifest: resume would empty that folder for the run.
    import json

    study_dir = study_dir_with_one_run_done(tmp_path)
    victim = tmp_path / "o" / "victim"
    victim.mkdir()
    (victim / "stats.json").write_text("precious")
    manifest = json.loads((study_dir / "manifest.json").read_text())
    manifest["runs"][1]["run_id"] = run_id
    (study_dir / "manifest.json").write_text(json.dumps(manifest))
    before = tree_digest(tmp_path)
    done = llem("run", "--resume", str(study_dir), "--runner", "local", cwd=tmp_path,
                timeout=60)
    refused(done, f"{run_id!r}", "restore manifest.json")
    assert tree_digest(tmp_path) == before


def test_a_resume_from_the_folder_alone_runs_in_the_order_it_last_ran_unless_told(tmp_path):
    # The file says sequential; the study ran interleaved (--order): a resume without the file
    # goes on interleaved, and an --order given now still wins.
    import dataclasses
    import json

    from orchestrator.study import load_study
    from orchestrator.study_dir import open_study_dir

    local_model(tmp_path)
    study = load_study(write(tmp_path, "model: ./model\nbackend: pytorch\nn: 2\nexecution: "
                             "{cycle_order: sequential, config_gap_s: 0, cycle_gap_s: 0}\n"
                             "sweep:\n  pytorch.batch_size: [1, 2]\n", name="s.yaml"))
    study = dataclasses.replace(study, execution=study.execution.model_copy(
        update={"n_cycles": 2, "cycle_order": "interleaved"}))
    with open_study_dir(study, "local", output_root=tmp_path / "o") as opened:
        study_dir = opened.path

    def planned(*flags: str) -> list[str]:
        done = llem("run", "--resume", str(study_dir), "--dry-run", "--json", *flags,
                    cwd=tmp_path, timeout=60)
        assert done.returncode == 0, done.stderr
        return [run["run_id"] for run in json.loads(done.stdout)["runs"]]

    assert planned() == ["001_pytorch-bs1_c1", "002_pytorch-bs2_c1",
                            "001_pytorch-bs1_c2", "002_pytorch-bs2_c2"]
    assert planned("--order", "sequential") == [
        "001_pytorch-bs1_c1", "001_pytorch-bs1_c2", "002_pytorch-bs2_c1", "002_pytorch-bs2_c2"]
