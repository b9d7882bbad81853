from pathlib import Path

import pytest
from pydantic import ValidationError

from harness.schema import ExperimentConfig, describe
from harness.schema.docgen import HEADER, render
from orchestrator.study.execution import ExecutionConfig

BASE = {"model": "m", "backend": "pytorch"}


def problems(**overrides):
    with pytest.raises(ValidationError) as info:
        ExperimentConfig(**{**BASE, **overrides})
    return describe(info.value)


def test_hash_is_16_hex_and_stable_across_key_order():
    one = ExperimentConfig(model="m", backend="pytorch", precision="fp16", n=3)
    two = ExperimentConfig(n=3, precision="fp16", backend="pytorch", model="m")
    assert one.measurement_config_hash == two.measurement_config_hash
    assert len(one.measurement_config_hash) == 16
    int(one.measurement_config_hash, 16)


@pytest.mark.parametrize("backend", ["pytorch", "vllm", "tensorrt"])
def test_an_empty_backend_section_is_the_same_measurement_as_none(backend):
    # Before: `pytorch: {}` hashed apart from no `pytorch:` section, so one measurement had
    # two hashes and its cycles were never pooled.
    absent = ExperimentConfig(model="m", backend=backend)
    empty = ExperimentConfig(model="m", backend=backend, **{backend: {}})
    defaults = ExperimentConfig(model="m", backend=backend, **{backend: absent.section()
                                                                .model_dump()})
    assert empty.measurement_config_hash == absent.measurement_config_hash
    assert defaults.measurement_config_hash == absent.measurement_config_hash
    assert empty.canonical_json() == absent.canonical_json()


def test_hashes_recorded_before_stay_the_same():
    # Results and study directories written so far carry these hashes: a configuration
    # without a backend section, or with settings in it, keeps its hash.
    assert ExperimentConfig(model="m", backend="pytorch").measurement_config_hash == (
        "85cfe96cbdacd0c5")
    assert ExperimentConfig(model="m", backend="vllm").measurement_config_hash == (
        "6dba1a2db3477121")
    assert ExperimentConfig(model="m", backend="tensorrt").measurement_config_hash == (
        "66bac2c877e8bcc7")
    eight = ExperimentConfig(model="m", backend="pytorch", pytorch={"batch_size": 8})
    assert eight.measurement_config_hash == "f73db5a4287cfceb"
    batch = ExperimentConfig(model="m", backend="tensorrt", tensorrt={"max_batch_size": 8})
    assert batch.measurement_config_hash == "349634ba8fe65d0c"  # before tensorrt.runtime


def test_the_tensorrt_runtime_is_part_of_the_hash_and_engine_is_the_default():
    engine = ExperimentConfig(model="m", backend="tensorrt", tensorrt={"runtime": "engine"})
    pytorch = ExperimentConfig(model="m", backend="tensorrt", tensorrt={"runtime": "pytorch"})
    plain = ExperimentConfig(model="m", backend="tensorrt")

    assert engine.measurement_config_hash == plain.measurement_config_hash
    assert pytorch.measurement_config_hash != plain.measurement_config_hash
    graphs = ExperimentConfig(model="m", backend="tensorrt",
                              tensorrt={"runtime": "pytorch", "cuda_graphs": False})
    assert graphs.measurement_config_hash != pytorch.measurement_config_hash


@pytest.mark.parametrize(("section", "named"), [
    ({"runtime": "pytorch", "engine_dir": "/e"}, "engine_dir"),
    ({"runtime": "pytorch", "quantization": "fp8"}, "quantization"),
    ({"cuda_graphs": True}, "cuda_graphs"),
    ({"runtime": "engine", "attention_backend": "FLASHINFER"}, "attention_backend"),
    ({"overlap_scheduler": False}, "overlap_scheduler"),
])
def test_a_setting_of_the_other_tensorrt_runtime_is_refused(section, named):
    with pytest.raises(ValidationError) as raised:
        ExperimentConfig(model="m", backend="tensorrt", tensorrt=section)

    message = str(raised.value)
    assert f"tensorrt.{named}" in message and "tensorrt.runtime" in message


@pytest.mark.parametrize("runtime", ["engine", "pytorch"])
def test_builder_opt_level_is_refused_as_a_removed_setting_with_its_reason(runtime):
    with pytest.raises(ValidationError) as raised:
        ExperimentConfig(model="m", backend="tensorrt",
                         tensorrt={"runtime": runtime, "builder_opt_level": 3})

    message = str(raised.value)
    assert "has a builder optimisation level" in message
    assert "Remove tensorrt.builder_opt_level" in message


def test_removing_builder_opt_level_keeps_every_tensorrt_hash():
    # Taken before the field was removed (it was always unset in any configuration written).
    set_section = ExperimentConfig(model="m", backend="tensorrt",
                                   tensorrt={"max_batch_size": 8})
    assert '"builder_opt_level":null' in set_section.canonical_json()
    assert set_section.measurement_config_hash == "349634ba8fe65d0c"
    plain = ExperimentConfig(model="m", backend="tensorrt")
    assert "builder_opt_level" not in plain.canonical_json()
    assert plain.measurement_config_hash == "66bac2c877e8bcc7"


def test_the_pytorch_runtime_refuses_quantising_precisions_and_stray_graph_sizes():
    with pytest.raises(ValidationError, match="pre-quantised checkpoint"):
        ExperimentConfig(model="m", backend="tensorrt", precision="fp8",
                         tensorrt={"runtime": "pytorch"})
    with pytest.raises(ValidationError, match="needs CUDA graphs on"):
        ExperimentConfig(model="m", backend="tensorrt", tensorrt={
            "runtime": "pytorch", "cuda_graphs": False, "cuda_graph_batch_sizes": [1, 2]})
    ExperimentConfig(model="m", backend="tensorrt", tensorrt={
        "runtime": "pytorch", "cuda_graphs": True, "cuda_graph_batch_sizes": [1, 2, 4],
        "attention_backend": "FLASHINFER", "overlap_scheduler": False,
        "kv_cache_free_gpu_memory_fraction": 0.5, "enable_block_reuse": False})


def test_a_backend_setting_changes_the_hash():
    plain = ExperimentConfig(**BASE)
    eager = ExperimentConfig(**BASE, pytorch={"attn_implementation": "eager"})
    assert plain.measurement_config_hash != eager.measurement_config_hash


def test_hash_changes_with_streaming_flag():
    plain = ExperimentConfig(**BASE)
    streaming = ExperimentConfig(**BASE, latency={"streaming": True})
    assert plain.measurement_config_hash != streaming.measurement_config_hash


def test_unknown_key_suggests_nearest_and_section():
    (problem,) = problems(pytorch={"batch_sise": 2})
    assert "did you mean 'pytorch.batch_size'" in problem.message
    (problem,) = problems(batch_size=2)
    assert "pytorch.batch_size" in problem.message


def test_literal_error_lists_allowed_values():
    (problem,) = problems(precision="fp64")
    assert problem.path == ("precision",)
    assert "'fp64'" in problem.message and "bf16" in problem.message


def test_cross_checks_are_flagged_as_such():
    (problem,) = problems(backend="vllm", decoder={"mode": "beam"})
    assert problem.cross_check
    assert "allowed: greedy, sampling" in problem.message
    (problem,) = problems(pytorch={"load_in_8bit": True}, precision="fp32")
    assert problem.cross_check and "fp16 or bf16" in problem.message


def test_section_must_match_backend():
    (problem,) = problems(vllm={"max_num_seqs": 4})
    assert "section 'vllm' does not apply to backend 'pytorch'" in problem.message


def test_tensorrt_rejects_lora_with_merge_instructions():
    (problem,) = problems(backend="tensorrt", lora={"adapter": "a"})
    assert "merge_and_unload" in problem.message


def test_credential_key_points_at_hf_token_without_echoing_value():
    secret = "hf_" + "x" * 34
    (problem,) = problems(passthrough_kwargs={"token": secret})
    assert "HF_TOKEN" in problem.message
    assert secret not in problem.message
    (problem,) = problems(passthrough_kwargs={"headers": secret})
    assert secret not in problem.message and "credential" in problem.message


def test_token_counts_are_not_credentials():
    config = ExperimentConfig(model="m", backend="vllm", vllm={"max_num_batched_tokens": 8})
    assert config.vllm is not None and config.vllm.max_num_batched_tokens == 8


def test_sampling_params_only_in_sampling_mode():
    (problem,) = problems(decoder={"temperature": 0.7})
    assert "mode 'sampling'" in problem.message
    ok = ExperimentConfig(**BASE, decoder={"mode": "sampling", "temperature": 0.7})
    assert ok.decoder.temperature == 0.7


def test_dataset_kinds():
    assert ExperimentConfig(**BASE, dataset="prompts.jsonl").dataset == "prompts.jsonl"
    (problem,) = problems(dataset="prompts.csv")
    assert "synthetic" in problem.message and ".jsonl" in problem.message


def test_configuration_reference_is_generated_from_the_models():
    from orchestrator import docgen  # adds the study-level execution: section

    committed = Path(__file__).parents[4] / "docs" / "configuration.md"
    regenerate = "python -m orchestrator.docgen > docs/configuration.md"
    assert committed.read_text() == docgen.render(), f"regenerate with: {regenerate}"
    experiment = render().removeprefix(HEADER)
    assert experiment and experiment in committed.read_text()  # every experiment-level key
    for name in ExecutionConfig.model_fields:
        assert f"| `execution.{name}` |" in committed.read_text()


def test_quantisation_tables_are_the_schema_choices():
    import typing

    from harness.schema.config import TensorRtConfig, VllmConfig
    from harness.schema.rules import RULES

    for backend, section in (("vllm", VllmConfig), ("tensorrt", TensorRtConfig)):
        annotation = section.model_fields["quantization"].annotation
        choices = {value for arm in typing.get_args(annotation)
                   for value in typing.get_args(arm)}
        assert choices == set(RULES[backend].quantizations), backend


@pytest.mark.parametrize("backend, scheme", [("vllm", "awq"), ("tensorrt", "int4_awq")])
def test_weight_quantisation_needs_half_precision(backend, scheme):
    (problem,) = problems(backend=backend, precision="fp32", **{backend: {"quantization": scheme}})
    assert f"{backend}.quantization '{scheme}' computes in fp16, bf16, not 'fp32'" in (
        problem.message)
    assert problem.cross_check  # a study skips the combination instead of failing
    ExperimentConfig(**{**BASE, "backend": backend, "precision": "bf16",
                        backend: {"quantization": scheme}})


def test_tensorrt_quantised_precision_excludes_a_second_scheme():
    (problem,) = problems(backend="tensorrt", precision="fp8", tensorrt={"quantization": "fp8"})
    assert "precision 'fp8' already selects a quantisation" in problem.message


def test_infinite_passthrough_values_reach_the_run_and_keep_their_own_hash():
    # Before: inf, -inf and nan were dumped as null, so the run received null and all four
    # settings shared one hash.
    from harness.schema.run_spec import RunSpec

    values = [float("inf"), float("-inf"), float("nan"), None]
    configs = [ExperimentConfig(**BASE, passthrough_kwargs={"k": value}) for value in values]
    assert len({config.measurement_config_hash for config in configs}) == 4
    spec = RunSpec(run_id="001_x_c1", config=configs[1]).model_dump_json()  # what a run reads
    assert RunSpec.model_validate_json(spec).config.passthrough_kwargs["k"] == float("-inf")
    finite = ExperimentConfig(**BASE, passthrough_kwargs={"k": 1.5})
    assert '"passthrough_kwargs":{"k":1.5}' in finite.canonical_json()


def test_a_run_loads_the_commit_its_hub_model_was_pinned_to():
    commit = "c" * 40
    assert ExperimentConfig(**BASE, model_digest=commit).load_revision == commit
    assert ExperimentConfig(**BASE, revision="v2", model_digest=commit).load_revision == commit
    assert ExperimentConfig(**BASE, revision="v2").load_revision == "v2"
    local = ExperimentConfig(**BASE, revision="v2", model_digest="local-files-sha256:" + "0" * 64)
    assert local.load_revision == "v2"


def test_a_ramp_up_as_long_as_the_serving_duration_is_refused_before_any_run():
    # The window would be empty: it is known from the config alone, so it must not take a
    # model load and a warmup (minutes to hours, each cycle) to find out.
    found = problems(backend="vllm", load={"mode": "serving", "request_rate": 2,
                                           "duration_s": 60, "ramp_up_s": 60})
    assert len(found) == 1
    assert "load.ramp_up_s" in found[0].message and "duration_s" in found[0].message
