"""Study expansion: grids per backend, explicit entries, bases, single experiments."""

from __future__ import annotations

from pathlib import Path

from llem_testkit.studies import write

from orchestrator.study import ExecutionConfig, load_study


def test_universal_and_scoped_keys_make_one_grid_per_backend(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        model: tiny
        backend: [pytorch, vllm]
        sweep:
          precision: [bf16, fp16]
          pytorch.batch_size: [1, 8]
          vllm.max_num_seqs: [16]
        """,
    )
    study = load_study(path)
    # pytorch: 2 precisions x 2 batch sizes; vllm: 2 precisions x 1 -> 4 + 2.
    assert [entry.slug for entry in study.experiments] == [
        "pytorch-bf16-bs1",
        "pytorch-bf16-bs8",
        "pytorch-fp16-bs1",
        "pytorch-fp16-bs8",
        "vllm-bf16-seqs16",
        "vllm-fp16-seqs16",
    ]
    pytorch_runs = [e.config for e in study.experiments if e.config.backend == "pytorch"]
    assert all(c.vllm is None and c.pytorch is not None for c in pytorch_runs)
    vllm_runs = [e.config for e in study.experiments if e.config.backend == "vllm"]
    assert all(c.pytorch is None and c.vllm and c.vllm.max_num_seqs == 16 for c in vllm_runs)
    assert {entry.origin for entry in study.experiments} == {"sweep"}
    assert study.skipped == [] and study.warnings == []


def test_explicit_entries_come_after_the_grids_merged_over_shared_defaults(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        """
        model: tiny
        backend: pytorch
        output_len: 64
        pytorch: {attn_implementation: sdpa}
        sweep:
          precision: [bf16, fp16]
        experiments:
          - {precision: fp32, pytorch: {batch_size: 4}}
          - {output_len: 32}
        """,
    )
    study = load_study(path)
    assert [e.origin for e in study.experiments] == [
        "sweep", "sweep", "experiments[0]", "experiments[1]"
    ]
    first = study.experiments[2].config
    assert first.precision == "fp32" and first.output_len == 64
    assert first.pytorch is not None
    assert (first.pytorch.batch_size, first.pytorch.attn_implementation) == (4, "sdpa")
    assert study.experiments[3].config.output_len == 32
    assert study.experiments[2].slug == "pytorch-fp32-bs4"


def test_experiments_without_sweep_run_only_the_entries(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        model: tiny
        backend: [pytorch, vllm]
        pytorch: {batch_size: 8}
        experiments:
          - {output_len: 32}
        """,
    )
    study = load_study(path)
    # An entry without its own backend runs on every shared backend; the pytorch section
    # applies to the pytorch run only.
    configs = [e.config for e in study.experiments]
    assert [c.backend for c in configs] == ["pytorch", "vllm"]
    assert configs[0].pytorch is not None and configs[0].pytorch.batch_size == 8
    assert configs[1].pytorch is None
    assert all(c.output_len == 32 for c in configs)


def test_shared_backend_sections_apply_to_their_own_backend_only(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        model: tiny
        backend: [pytorch, vllm]
        vllm: {max_num_seqs: 8}
        pytorch: {batch_size: 4}
        experiments:
          - {backend: pytorch, precision: fp32}
          - {backend: vllm, precision: fp16}
        """,
    )
    study = load_study(path)
    assert study.skipped == []
    pytorch, vllm = (entry.config for entry in study.experiments)
    assert pytorch.vllm is None and pytorch.pytorch is not None
    assert vllm.pytorch is None and vllm.vllm is not None and vllm.vllm.max_num_seqs == 8


def test_nested_sweep_mapping_means_the_same_as_dotted_keys(tmp_path: Path) -> None:
    dotted = write(
        tmp_path,
        """
        model: tiny
        backend: pytorch
        sweep:
          pytorch.batch_size: [1, 8]
          decoder.mode: [greedy, sampling]
        """,
        "dotted.yaml",
    )
    nested = write(
        tmp_path,
        """
        model: tiny
        backend: pytorch
        sweep:
          pytorch: {batch_size: [1, 8]}
          decoder: {mode: [greedy, sampling]}
        """,
        "nested.yaml",
    )
    assert load_study(dotted).design_hash == load_study(nested).design_hash
    assert len(load_study(nested).experiments) == 4


def test_dotted_keys_work_in_shared_defaults_too(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        model: tiny
        backend: pytorch
        pytorch.batch_size: 8
        decoder.mode: greedy
        """,
    )
    config = load_study(path).experiments[0].config
    assert config.pytorch is not None and config.pytorch.batch_size == 8


def test_backend_can_be_swept_like_any_universal_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        model: tiny
        sweep:
          backend: [pytorch, vllm]
          precision: [bf16, fp16]
        """,
    )
    backends = [e.config.backend for e in load_study(path).experiments]
    assert backends == ["pytorch", "pytorch", "vllm", "vllm"]


def test_base_file_is_merged_under_the_files_own_keys(tmp_path: Path) -> None:
    (tmp_path / "common").mkdir()
    write(
        tmp_path,
        """
        model: tiny
        backend: pytorch
        output_len: 256
        pytorch: {attn_implementation: sdpa, batch_size: 2}
        sweep:
          precision: [bf16, fp16]
        execution: {n_cycles: 3, config_gap_s: 5}
        """,
        "common/base.yaml",
    )
    path = write(
        tmp_path,
        """
        base: common/base.yaml
        output_len: 64
        pytorch: {batch_size: 8}
        sweep:
          input_len: [32, 64]
        execution: {n_cycles: 5}
        """,
    )
    study = load_study(path)
    assert len(study.experiments) == 4  # base's precision sweep x the file's input_len sweep
    config = study.experiments[0].config
    assert config.output_len == 64
    assert config.pytorch is not None
    assert (config.pytorch.batch_size, config.pytorch.attn_implementation) == (8, "sdpa")
    assert (study.execution.n_cycles, study.execution.config_gap_s) == (5, 5.0)
    assert study.name == "study"  # a study is named by its own file, never by its base
    assert study.source_text.startswith("base: common/base.yaml")


def test_single_experiment_file_is_a_study_of_one(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        model: tiny
        backend: pytorch
        precision: fp16
        """,
        "quick-check.yaml",
    )
    study = load_study(path)
    assert len(study.experiments) == 1
    entry = study.experiments[0]
    assert (entry.config.precision, entry.origin, entry.slug) == ("fp16", "file", "pytorch")
    assert study.name == "quick-check"
    assert study.execution == ExecutionConfig()
    assert study.source_path == path


def test_execution_defaults_live_in_the_schema(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: nightly
        model: tiny
        backend: pytorch
        sweep: {precision: [bf16]}
        execution: {cycle_order: shuffled, gpus: [0, 1]}
        """,
    )
    study = load_study(path)
    assert study.name == "nightly"
    execution = study.execution
    assert (execution.n_cycles, execution.cycle_order, execution.shuffle_seed) == (
        1, "shuffled", 42
    )
    assert (execution.config_gap_s, execution.cycle_gap_s, execution.timeout_s) == (
        60.0, 300.0, 3600.0
    )
    assert execution.gpus == [0, 1] and execution.gap_until_cool is False


def test_slugs_are_safe_directory_names(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        model: org/Some Model v2
        backend: pytorch
        experiments:
          - {model: "org/Other Model: 7B", pytorch: {torch_compile: true}}
        """,
    )
    slug = load_study(path).experiments[0].slug
    assert slug == "pytorch-Other_Model_7B-compile"


def test_a_cross_request_cache_sweep_names_itself_in_the_slug(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        model: tiny
        backend: [vllm, tensorrt]
        sweep:
          vllm.enable_prefix_caching: [false, true]
          tensorrt.enable_block_reuse: [false, true]
        """,
    )

    assert [entry.slug for entry in load_study(path).experiments] == [
        "vllm-noprefix", "vllm-prefix", "tensorrt-noreuse", "tensorrt-reuse"]


def test_accented_values_are_transliterated_in_slugs_not_dropped():
    from orchestrator.study.slug import slug, token

    assert token(("dataset",), "données-été.jsonl") == "donnees_ete.jsonl"
    assert slug([token(("model",), "org/modèle"), token(("pytorch", "batch_size"), 8)]) == (
        "modele-bs8")
