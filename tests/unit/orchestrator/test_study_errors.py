"""Study files that must fail the whole load, each with its file, line and a fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from llem_testkit.studies import load_error, write

from harness.errors import ConfigError
from orchestrator.study import StudyFileError, loader


def test_unknown_nested_sweep_path_suggests_the_real_key_with_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        model: tiny
        backend: pytorch
        sweep:
          pytorch.attn.implementation: [sdpa, eager]
        """,
    )
    error = load_error(path)
    assert str(error).startswith(
        f"{path}:4:3: unknown key 'pytorch.attn.implementation'; "
        "did you mean 'pytorch.attn_implementation'?"
    )
    assert "fix: rename 'pytorch.attn.implementation' to 'pytorch.attn_implementation'" in str(
        error
    )
    assert (error.file, error.line, error.column) == (path, 4, 3)
    assert error.key == "pytorch.attn.implementation"
    assert isinstance(error, ConfigError)  # the CLI maps every ConfigError to exit code 2


def test_backend_field_at_top_level_points_at_its_section(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        model: tiny
        backend: pytorch
        batch_size: 8
        """,
    )
    error = load_error(path)
    assert error.line == 3
    assert "unknown key 'batch_size'; did you mean 'pytorch.batch_size'?" in str(error)


def test_backend_field_swept_without_its_backend_points_at_its_section(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        model: tiny
        backend: [pytorch, vllm]
        sweep:
          max_num_seqs: [8, 16]
        """,
    )
    error = load_error(path)
    assert (error.line, error.key) == (4, "max_num_seqs")
    assert "did you mean 'vllm.max_num_seqs'?" in str(error)


def test_unknown_key_in_an_entry_has_the_entrys_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        model: tiny
        backend: pytorch
        experiments:
          - precision: fp16
          - precison: fp32
        """,
    )
    error = load_error(path)
    assert (error.line, error.column) == (5, 5)
    assert "unknown key 'precison'; did you mean 'precision'?" in str(error)


def test_execution_setting_at_top_level_says_where_it_belongs(tmp_path: Path) -> None:
    path = write(tmp_path, "model: tiny\nbackend: pytorch\nn_cycles: 3\n")
    error = load_error(path)
    assert error.line == 3
    assert "'n_cycles' is an execution setting" in str(error)
    assert "execution:" in (error.fix or "")


def test_scoped_key_for_a_backend_not_listed_is_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        model: tiny
        backend: pytorch
        sweep:
          precision: [bf16, fp16]
          vllm.max_num_seqs: [16, 32]
        """,
    )
    error = load_error(path)
    assert error.line == 5
    assert "'vllm.max_num_seqs' is for backend 'vllm', which is not listed" in str(error)
    assert "add vllm to 'backend:'" in str(error)


@pytest.mark.parametrize("section", ["vllm: {max_num_seqs: 8}", "vllm.max_num_seqs: 8"])
def test_section_for_a_backend_nothing_uses_is_an_error(tmp_path: Path, section: str) -> None:
    path = write(tmp_path, f"model: tiny\nbackend: pytorch\n{section}\n")
    error = load_error(path)
    assert error.line == 3
    assert "no experiment uses backend 'vllm'" in str(error)


def test_empty_sweep_list_is_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        model: tiny
        backend: pytorch
        sweep:
          precision: []
        """,
    )
    error = load_error(path)
    assert error.line == 4
    assert "sweep key 'precision' has no values" in str(error)


def test_scalar_sweep_value_is_an_error_that_shows_the_list_form(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        model: tiny
        backend: pytorch
        sweep:
          precision: bf16
        """,
    )
    error = load_error(path)
    assert error.line == 4
    assert "must be a list of values" in str(error)
    assert "precision: [bf16]" in (error.fix or "")


def test_bad_value_in_a_sweep_list_points_at_the_item(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        model: tiny
        backend: pytorch
        sweep:
          pytorch.batch_size: [1, 0]
        """,
    )
    error = load_error(path)
    assert (error.line, error.column) == (4, 27)
    assert "pytorch.batch_size: 0 is invalid" in str(error)


def test_unknown_backend_name_suggests_the_nearest(tmp_path: Path) -> None:
    path = write(tmp_path, "model: tiny\nbackend: [pytorch, vlm]\n")
    error = load_error(path)
    assert (error.line, error.column) == (2, 20)
    assert "did you mean 'vllm'?" in str(error)


def test_missing_model_is_an_error_not_a_skip(tmp_path: Path) -> None:
    path = write(tmp_path, "backend: pytorch\nsweep: {precision: [bf16, fp16]}\n")
    error = load_error(path)
    assert "model is required" in str(error)
    assert error.line == 1


def test_duplicate_yaml_key_is_an_error_with_both_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        model: tiny
        backend: pytorch
        precision: bf16
        output_len: 64
        precision: fp16
        """,
    )
    error = load_error(path)
    assert (error.line, error.column) == (5, 1)
    assert "duplicate key 'precision' (first at line 3)" in str(error)


def test_same_setting_written_dotted_and_nested_is_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        model: tiny
        backend: pytorch
        pytorch: {batch_size: 1}
        pytorch.batch_size: 8
        """,
    )
    error = load_error(path)
    assert error.line == 4
    assert "'pytorch.batch_size' is set twice" in str(error)


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "model: tiny\nbackend: [pytorch, vllm\nprecision: bf16\n")
    error = load_error(path)
    assert error.line is not None and error.line >= 2
    assert "not valid YAML" in str(error)


def test_missing_file_is_a_study_file_error(tmp_path: Path) -> None:
    error = load_error(tmp_path / "nope.yaml")
    assert "cannot read the file" in str(error)
    assert str(error).startswith(str(tmp_path / "nope.yaml"))


def test_error_in_a_base_file_names_the_base_file(tmp_path: Path) -> None:
    base = write(tmp_path, "model: tiny\nbackend: pytorch\nprecison: bf16\n", "base.yaml")
    path = write(tmp_path, "base: base.yaml\noutput_len: 8\n")
    error = load_error(path)
    assert (error.file, error.line) == (base, 3)


def test_base_cycle_is_detected(tmp_path: Path) -> None:
    write(tmp_path, "base: b.yaml\nmodel: tiny\n", "a.yaml")
    write(tmp_path, "base: a.yaml\nbackend: pytorch\n", "b.yaml")
    error = load_error(tmp_path / "a.yaml")
    assert "base files form a cycle" in str(error)
    assert error.line == 1


def test_missing_base_file_points_at_the_base_key(tmp_path: Path) -> None:
    path = write(tmp_path, "model: tiny\nbase: shared.yaml\n")
    error = load_error(path)
    assert error.line == 2 and "base file 'shared.yaml' not found" in str(error)


def test_a_base_missing_from_a_given_chain_points_at_the_base_key(tmp_path: Path) -> None:
    write(tmp_path, "model: tiny\nbackend: pytorch\n", "shared.yaml")
    path = write(tmp_path, "output_len: 8\nbase: shared.yaml\n")
    with pytest.raises(StudyFileError) as caught:
        loader.load_study(path, bases=[])  # the chain a study directory kept: no base
    assert caught.value.line == 2
    assert "base file 'shared.yaml' is not among the files kept with the study" in str(
        caught.value)


def test_a_given_chain_of_bases_replaces_the_lookup_next_to_each_file(tmp_path: Path) -> None:
    write(tmp_path, "model: tiny\nbackend: pytorch\nn: 3\n", "shared.yaml")
    kept = write(tmp_path, "model: tiny\nbackend: pytorch\nn: 7\n", "kept.yaml")
    path = write(tmp_path, "output_len: 8\nbase: shared.yaml\n")
    study = loader.load_study(path, bases=[kept])
    assert study.experiments[0].config.n == 7
    assert [(f.path, f.base) for f in study.files] == [(path, "shared.yaml"), (kept, None)]


def test_execution_block_is_validated_with_did_you_mean(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        model: tiny
        backend: pytorch
        execution:
          n_cycle: 3
        """,
    )
    error = load_error(path)
    assert error.line == 4
    assert "did you mean 'n_cycles'?" in str(error)


def test_execution_literal_lists_what_is_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, "model: tiny\nbackend: pytorch\nexecution: {cycle_order: random}\n")
    error = load_error(path)
    assert error.line == 3
    assert "'random' is not allowed" in str(error) and "interleaved" in str(error)


def test_absurd_grid_is_refused_before_it_is_built(tmp_path: Path, monkeypatch) -> None:
    def never(recipes):
        raise AssertionError("the grid's configurations were enumerated or built")

    # Not a stopwatch: the refusal is proved to come before any configuration exists.
    monkeypatch.setattr(loader, "_resolve", never)
    values = "[" + ", ".join(str(n) for n in range(1, 11)) + "]"
    keys = ["input_len", "output_len", "n", "random_seed", "warmup.n_warmup", "pytorch.batch_size"]
    sweep = "".join(f"  {key}: {values}\n" for key in keys)
    path = write(tmp_path, f"model: tiny\nbackend: pytorch\nsweep:\n{sweep}")
    error = load_error(path)
    assert "1,000,000 runs" in str(error) and "100,000" in str(error)


def test_cycles_count_towards_the_run_limit(tmp_path: Path) -> None:
    values = "[" + ", ".join(str(n) for n in range(1, 301)) + "]"
    path = write(
        tmp_path,
        f"""
        model: tiny
        backend: pytorch
        execution: {{n_cycles: 2}}
        sweep:
          input_len: {values}
          output_len: {values}
        """,
    )
    error = load_error(path)
    assert "180,000 runs (90,000 configurations x 2 cycles)" in str(error)


def test_study_where_every_combination_is_rejected_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "model: tiny\nbackend: pytorch\nsweep: {precision: [fp8, int4]}\n")
    error = load_error(path)
    assert "nothing would run" in str(error)
    assert "precision 'fp8' is not supported by pytorch" in str(error)


def test_study_without_any_experiment_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "model: tiny\nbackend: pytorch\nexperiments: []\n")
    assert "no experiments" in str(load_error(path))


def test_a_sweep_value_of_a_child_that_sets_what_its_base_sweeps_names_both_files(
        tmp_path: Path) -> None:
    base = write(tmp_path, "model: tiny\nbackend: pytorch\nsweep:\n\n\n"
                 "  pytorch.batch_size: [1, 8]\n", "base.yaml")
    path = write(tmp_path, "base: base.yaml\nsweep:\n  pytorch:\n    - {batch_size: 4}\n")
    error = load_error(path)
    assert (error.file, error.line) == (path, 4)
    assert f"{base}:6:3" in str(error) and "line 4: 'pytorch.batch_size'" in str(error)


@pytest.mark.parametrize("base", [
    None, "model: tiny\nbackend: pytorch\nsweep: {precision: [fp16]}\n"])
def test_a_null_sweep_key_that_drops_nothing_asks_for_values(tmp_path: Path, base) -> None:
    head = "model: tiny\nbackend: pytorch\n"
    if base is not None:
        write(tmp_path, base, "base.yaml")
        head = "base: base.yaml\n"
    error = load_error(write(tmp_path, head + "sweep:\n  pytorch.batch_size:\n"))
    assert error.line == 3 + (base is None) and "is null" in str(error)
    assert "give 'pytorch.batch_size' a list of values" in str(error)
