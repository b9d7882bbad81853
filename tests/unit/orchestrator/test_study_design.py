"""What a loaded study reports: skipped combinations, collapsed duplicates, design hash."""

from __future__ import annotations

from pathlib import Path

from llem_testkit.studies import write

from orchestrator.study import load_study

GRID = """
model: tiny
backend: [pytorch, vllm]
sweep:
  precision: [bf16, fp16]
  pytorch.batch_size: [1, 8]
"""


def test_cross_check_combinations_become_skipped_entries_with_reasons(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        model: tiny
        backend: [pytorch, tensorrt]
        sweep:
          precision: [bf16, fp8]
          decoder.mode: [greedy, beam]
        """,
    )
    study = load_study(path)
    # pytorch cannot run fp8 (2 of its 4 combinations); tensorrt runs all four.
    assert len(study.experiments) == 6
    assert [s.description for s in study.skipped] == [
        "pytorch-fp8-greedy (sweep)",
        "pytorch-fp8-beam (sweep)",
    ]
    assert all(
        "precision 'fp8' is not supported by pytorch; allowed: fp32, fp16, bf16" in s.reason
        for s in study.skipped
    )


def test_explicit_entry_with_a_wrong_section_is_skipped_not_silently_fixed(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        """
        model: tiny
        backend: pytorch
        experiments:
          - {precision: fp16}
          - {backend: pytorch, vllm: {max_num_seqs: 8}}
        """,
    )
    study = load_study(path)
    assert len(study.experiments) == 1
    (skipped,) = study.skipped
    assert skipped.description.endswith("(experiments[1])")
    assert "section 'vllm' does not apply to backend 'pytorch'" in skipped.reason


def test_duplicate_configurations_are_collapsed_with_a_warning(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        model: tiny
        backend: pytorch
        sweep:
          precision: [bf16, fp16]
        experiments:
          - {precision: bf16}
        """,
    )
    study = load_study(path)
    assert [e.config.precision for e in study.experiments] == ["bf16", "fp16"]
    (warning,) = study.warnings
    assert "(experiments[0]) is the same configuration as pytorch-bf16 (sweep)" in warning
    assert study.experiments[0].config.measurement_config_hash in warning
    assert "runs once" in warning


def test_design_hash_ignores_execution_and_name(tmp_path: Path) -> None:
    plain = load_study(write(tmp_path, GRID, "a.yaml"))
    other = GRID + "name: renamed\nexecution: {n_cycles: 5, cycle_order: shuffled}\n"
    renamed = load_study(write(tmp_path, other, "b.yaml"))
    assert len(plain.design_hash) == 16 and int(plain.design_hash, 16) >= 0
    assert renamed.design_hash == plain.design_hash
    assert renamed.execution.n_cycles == 5 and renamed.name == "renamed"


def test_design_hash_changes_when_the_grid_changes(tmp_path: Path) -> None:
    plain = load_study(write(tmp_path, GRID, "a.yaml"))
    wider = load_study(write(tmp_path, GRID.replace("[1, 8]", "[1, 8, 16]"), "b.yaml"))
    other_model = load_study(write(tmp_path, GRID.replace("tiny", "small"), "c.yaml"))
    assert len({plain.design_hash, wider.design_hash, other_model.design_hash}) == 3


def test_design_hash_is_the_same_for_the_same_design_written_differently(
    tmp_path: Path,
) -> None:
    grid = load_study(write(tmp_path, GRID, "a.yaml"))
    explicit = write(
        tmp_path,
        """
        model: tiny
        experiments:
          - {backend: pytorch, precision: bf16, pytorch.batch_size: 1}
          - {backend: pytorch, precision: bf16, pytorch.batch_size: 8}
          - {backend: pytorch, precision: fp16, pytorch.batch_size: 1}
          - {backend: pytorch, precision: fp16, pytorch.batch_size: 8}
          - {backend: vllm, precision: bf16}
          - {backend: vllm, precision: fp16}
        """,
        "b.yaml",
    )
    assert load_study(explicit).design_hash == grid.design_hash


def test_null_over_a_base_section_is_the_same_design_as_no_section(tmp_path: Path) -> None:
    write(tmp_path, "model: m\nbackend: [pytorch, vllm]\nvllm: {max_num_seqs: 64}\n"
          "sweep:\n  pytorch.batch_size: [1, 2]\n  vllm.enforce_eager: [true, false]\n",
          "base.yaml")
    child = write(tmp_path, "base: base.yaml\nvllm: null\nsweep:\n  vllm.enforce_eager: null\n",
                  "child.yaml")
    plain = write(tmp_path, "model: m\nbackend: [pytorch, vllm]\n"
                  "sweep:\n  pytorch.batch_size: [1, 2]\n", "plain.yaml")
    assert load_study(child).design_hash == load_study(plain).design_hash
    assert len(load_study(child).experiments) == 3


def test_null_for_a_section_of_an_unused_backend_is_no_section(tmp_path: Path) -> None:
    study = load_study(write(tmp_path, "model: m\nbackend: pytorch\nvllm: null\n"))
    assert [entry.config.backend for entry in study.experiments] == ["pytorch"]


SWEEPS = """
model: tiny
backend: [pytorch, vllm]
sweep:
  pytorch.batch_size: [8, 1]
  precision: [fp16, bf16]
"""


def test_design_hash_does_not_depend_on_the_order_of_sweep_keys_or_values(
    tmp_path: Path,
) -> None:
    # Before: the hash was over the configurations in run order, so a swap changed it.
    grid = load_study(write(tmp_path, GRID, "a.yaml"))
    swapped = load_study(write(tmp_path, SWEEPS, "b.yaml"))
    assert swapped.design_hash == grid.design_hash
    assert [e.slug for e in swapped.experiments] != [e.slug for e in grid.experiments]


def test_design_hash_of_an_empty_backend_section_is_that_of_none(tmp_path: Path) -> None:
    grid = load_study(write(tmp_path, GRID, "a.yaml"))
    sections = load_study(write(tmp_path, GRID + "vllm: {}\n", "b.yaml"))
    assert sections.design_hash == grid.design_hash
