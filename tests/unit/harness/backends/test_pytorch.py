"""The PyTorch backend running a real tiny model on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.backends.base import GenerationOutput, Request
from harness.backends.pytorch import PyTorchBackend
from harness.datasets import build_requests, warmup_twins
from harness.errors import BackendError
from harness.schema.config import ExperimentConfig

EOS_ID = 1
MakeBackend = Callable[..., PyTorchBackend]


def test_importing_the_backend_imports_neither_torch_nor_transformers() -> None:
    code = (
        "import sys\n"
        "from harness.backends import backend_class\n"
        "backend_class('pytorch')\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'tokenizers') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    assert result.returncode == 0, result.stderr


pytest.importorskip("torch")
pytest.importorskip("transformers")


def make_config(model_dir: Path, **overrides: Any) -> ExperimentConfig:
    values: dict[str, Any] = {
        "model": str(model_dir),
        "backend": "pytorch",
        "precision": "fp32",
        "n": 4,
        "input_len": 8,
        "output_len": 6,
    }
    values.update(overrides)
    return ExperimentConfig(**values)


@pytest.fixture
def make_backend(tiny_model_dir: Path) -> MakeBackend:
    def make(**overrides: Any) -> PyTorchBackend:
        backend = PyTorchBackend(make_config(tiny_model_dir, **overrides), "cpu")
        backend.load()
        return backend

    return make


def favour_eos(backend: PyTorchBackend) -> None:
    """Make EOS the overwhelmingly likely next token at every step, for every sequence."""

    def boost(module: Any, inputs: Any, logits: Any) -> Any:
        logits[..., EOS_ID] += 1e4
        return logits

    backend.model.get_output_embeddings().register_forward_hook(boost)


def run(backend: PyTorchBackend) -> GenerationOutput:
    return backend.generate(build_requests(backend.config, backend))


# -- fixed output length --------------------------------------------------------------------


def test_the_eos_boost_would_stop_plain_generation_after_one_token(
    make_backend: MakeBackend,
) -> None:
    import torch

    backend = make_backend()
    favour_eos(backend)

    sequences = backend.model.generate(
        input_ids=torch.tensor([[5, 6, 7]]), max_new_tokens=6, do_sample=False
    )

    assert sequences.shape[1] == 3 + 1 and int(sequences[0, -1]) == EOS_ID


@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize(
    "decoder",
    [
        {"mode": "greedy"},
        {"mode": "sampling", "temperature": 0.8},
        {"mode": "beam", "num_beams": 2},
    ],
    ids=["greedy", "sampling", "beam"],
)
def test_every_request_gets_exactly_max_new_tokens_even_when_eos_is_likely(
    make_backend: MakeBackend, batch_size: int, decoder: dict[str, Any]
) -> None:
    backend = make_backend(pytorch={"batch_size": batch_size}, decoder=decoder)
    favour_eos(backend)

    result = run(backend)

    assert [o.request_id for o in result.outputs] == [0, 1, 2, 3]
    assert all(o.output_tokens == 6 for o in result.outputs)
    assert all(o.output_ids is not None and len(o.output_ids) == 6 for o in result.outputs)
    assert all(EOS_ID not in (o.output_ids or []) for o in result.outputs)
    assert all(o.input_tokens == 8 for o in result.outputs)
    assert len(result.phase_marks) == -(-4 // batch_size)
    assert result.phases_separated is True


def test_requests_of_different_lengths_in_one_batch_each_get_their_own(
    make_backend: MakeBackend,
) -> None:
    backend = make_backend(pytorch={"batch_size": 3})
    requests = [
        Request(0, [10, 11, 12], 2),
        Request(1, [20, 21, 22, 23, 24, 25], 5),
        Request(2, [30], 3),
    ]

    result = backend.generate(requests)

    assert [o.output_tokens for o in result.outputs] == [2, 5, 3]
    assert [len(o.output_ids or []) for o in result.outputs] == [2, 5, 3]
    assert [o.input_tokens for o in result.outputs] == [3, 6, 1]
    # A static batch returns all its rows at once: every request finishes with the batch.
    assert {o.end_s for o in result.outputs} == {result.phase_marks[0].end_s}
    assert result.latency_reference == "batch_start"
    # ... and computes the longest row's length for every row, padded to the longest prompt
    assert [o.generated_positions for o in result.outputs] == [5, 5, 5]
    assert [o.padding_tokens for o in result.outputs] == [3, 0, 5]


def test_static_batches_count_generated_positions_beside_requested_tokens(
    make_backend: MakeBackend,
) -> None:
    # Before: a 16- and a 256-token request in one batch counted 272 tokens while 512 decode
    # positions were generated, and nothing said so.
    from harness import metrics

    backend = make_backend(pytorch={"batch_size": 2})
    result = backend.generate([Request(0, [10, 11, 12, 13], 16), Request(1, [20, 21], 256)])
    work = metrics.throughput(result, duration_s=1.0)
    assert work.output_tokens == 272  # what was asked for: every per-token figure uses this
    assert work.generated_positions == 512
    assert work.prompt_padding_tokens == 2


def test_left_padding_does_not_change_what_a_prompt_generates(make_backend: MakeBackend) -> None:
    prompt = [40, 41, 42, 43]
    alone = make_backend().generate([Request(0, prompt, 5)])
    padded = make_backend(pytorch={"batch_size": 2}).generate(
        [Request(0, [7, 8, 9, 10, 11, 12, 13, 14], 5), Request(1, prompt, 5)]
    )

    assert padded.outputs[1].output_ids == alone.outputs[0].output_ids


# -- seeding --------------------------------------------------------------------------------


def test_sampling_is_reproducible_for_a_seed_and_differs_across_seeds(
    make_backend: MakeBackend,
) -> None:
    seeded = make_backend(decoder={"mode": "sampling"}, random_seed=3)
    first = [o.output_ids for o in run(seeded).outputs]
    again = [o.output_ids for o in run(seeded).outputs]
    other_seed = make_backend(decoder={"mode": "sampling"}, random_seed=4)
    same_prompts = build_requests(seeded.config, seeded)
    other = [o.output_ids for o in other_seed.generate(same_prompts).outputs]

    assert first == again
    assert first != other


# -- timing ---------------------------------------------------------------------------------


def test_phase_marks_and_request_times_are_ordered(make_backend: MakeBackend) -> None:
    result = run(make_backend(pytorch={"batch_size": 2}))

    marks = result.phase_marks
    assert all(m.start_s < m.prefill_end_s < m.end_s for m in marks)
    assert marks[0].end_s <= marks[1].start_s
    for output in result.outputs:
        assert output.start_s < (output.first_token_s or 0) < output.end_s
        assert output.token_times_s is None


def test_streaming_records_one_increasing_time_per_token(make_backend: MakeBackend) -> None:
    result = run(make_backend(pytorch={"batch_size": 2}, latency={"streaming": True}))

    for index, output in enumerate(result.outputs):
        mark = result.phase_marks[index // 2]
        times = output.token_times_s or []
        assert len(times) == output.output_tokens == 6
        assert times == sorted(times) and len(set(times)) == 6
        assert times[0] == output.first_token_s == mark.prefill_end_s
        assert mark.start_s < times[0] and times[-1] <= output.end_s == mark.end_s


def test_on_batch_reports_progress_after_each_batch(make_backend: MakeBackend) -> None:
    backend = make_backend(pytorch={"batch_size": 3})
    progress: list[tuple[int, int]] = []

    def record(done: int, total: int) -> None:
        progress.append((done, total))

    backend.generate(build_requests(backend.config, backend), on_batch=record)

    assert progress == [(3, 4), (4, 4)]


def test_warmup_is_the_first_full_batch(make_backend: MakeBackend) -> None:
    backend = make_backend(pytorch={"batch_size": 3})
    requests = build_requests(backend.config, backend)

    assert backend.warmup_requests(requests) == requests[:3]


def varied_prompts(directory: Path) -> Path:
    """Seven prompts of three token lengths, some asking for fewer new tokens."""
    words = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while"]
    lines = [
        json.dumps({"prompt": " ".join(words[: 2 + (i * 3) % 9]),
                    **({"max_new_tokens": 3} if i % 4 == 0 else {})})
        for i in range(7)
    ]
    path = directory / "varied.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def shapes(requests: list[Request], batch_size: int) -> list[tuple[int, int, int]]:
    """(rows, padded width, new tokens) of each static batch ``generate`` cuts."""
    batches = [requests[i : i + batch_size] for i in range(0, len(requests), batch_size)]
    return [(len(b), max(len(r.input_ids) for r in b), max(r.max_new_tokens for r in b))
            for b in batches]


def test_with_torch_compile_warmup_has_one_batch_of_every_window_shape(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # 11 requests in batches of 3: a short last batch of 2, and prompt widths that differ.
    config = make_config(tiny_model_dir, n=11, input_len=32, dataset=str(varied_prompts(tmp_path)),
                         pytorch={"batch_size": 3, "torch_compile": True})
    backend = PyTorchBackend(config, "cpu")
    requests = build_requests(config, backend)
    twins = warmup_twins(backend.warmup_requests(requests), backend.vocab_ids(), 0)

    window = shapes(requests, 3)
    assert len(set(window)) >= 3 and window[-1][0] == 2  # the case is not trivial
    assert shapes(twins, 3) == sorted(set(window), key=window.index)  # each once, in order
    assert all(t.input_ids != r.input_ids for t, r in zip(twins, requests, strict=False))


@pytest.mark.slow
def test_with_torch_compile_nothing_compiles_inside_the_window(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    import torch

    config = make_config(tiny_model_dir, n=11, input_len=32, output_len=4,
                         dataset=str(varied_prompts(tmp_path)), pytorch={"batch_size": 3})
    backend = PyTorchBackend(config, "cpu")
    backend.load()
    # As pytorch.torch_compile does, but through a compiler that only counts its calls
    # (inductor would need minutes on a CPU): every compile and recompile calls it once.
    compiles: list[int] = []

    def counting(graph: Any, example_inputs: Any) -> Any:
        compiles.append(1)
        return graph.forward

    backend.model.forward = torch.compile(backend.model.forward, backend=counting)
    backend.settings = backend.settings.model_copy(update={"torch_compile": True})
    requests = build_requests(config, backend)
    warmup = warmup_twins(backend.warmup_requests(requests), backend.vocab_ids(), 0)

    backend.generate(warmup)
    compiled_in_warmup = len(compiles)
    backend.generate(requests)

    assert compiled_in_warmup > 0
    assert len(compiles) == compiled_in_warmup  # the first-batch-only warmup left 3 here


# -- reporting ------------------------------------------------------------------------------


def test_effective_parameters_resolve_every_default(make_backend: MakeBackend) -> None:
    params = make_backend(decoder={"mode": "sampling", "top_p": 0.9}).effective_parameters()

    assert params["batch_size"] == 1
    assert params["dtype"] == "float32"
    assert params["attn_implementation"] == "sdpa"
    assert params["torch_compile"] is False
    assert params["quantization"] is None
    assert params["device"] == "cpu"
    assert params["device_map"] == {"": "cpu"}
    assert params["padding_side"] == "left"
    assert params["pad_token_id"] == 2
    assert params["do_sample"] is True
    assert params["num_beams"] == 1
    assert (params["temperature"], params["top_p"], params["top_k"]) == (1.0, 0.9, 0)
    assert params["model_source"] == "local_directory"


def test_effective_parameters_record_beam_width_and_attention_asked_for(
    make_backend: MakeBackend,
) -> None:
    params = make_backend(
        decoder={"mode": "beam"}, pytorch={"batch_size": 2, "attn_implementation": "eager"}
    ).effective_parameters()

    assert params["num_beams"] == 4
    assert params["do_sample"] is False
    assert params["attn_implementation"] == "eager"
    assert params["batch_size"] == 2


def test_memory_on_cpu_counts_parameter_bytes_and_peak_rss(make_backend: MakeBackend) -> None:
    backend = make_backend()
    parameter_bytes = sum(p.numel() * 4 for p in backend.model.parameters())

    memory = backend.memory()

    assert memory is not None and memory.device == "cpu"
    assert memory.model_memory_mb == pytest.approx(parameter_bytes / 2**20, rel=0.05)
    assert (memory.peak_inference_memory_mb or 0) > memory.model_memory_mb
    assert "getrusage" in memory.method


def test_parameter_counts_leave_out_embeddings(make_backend: MakeBackend, tmp_path: Path) -> None:
    from harness.tiny_model import build_tiny_model

    untied = make_backend()
    tied_dir = build_tiny_model(tmp_path / "tied", tie_word_embeddings=True)
    tied = PyTorchBackend(make_config(tied_dir), "cpu")
    tied.load()

    total, non_embedding = untied.parameter_counts()
    tied_total, tied_non_embedding = tied.parameter_counts()

    embedding = 512 * 64
    assert total - non_embedding == 2 * embedding
    assert tied_total == total - embedding
    assert tied_non_embedding == non_embedding


def test_versions_come_from_the_libraries(make_backend: MakeBackend) -> None:
    import torch
    import transformers

    versions = make_backend().versions()

    assert versions["torch"] == torch.__version__
    assert versions["transformers"] == transformers.__version__


def test_vocab_ids_leave_out_special_tokens(tiny_model_dir: Path) -> None:
    backend = PyTorchBackend(make_config(tiny_model_dir), "cpu")

    ids = backend.vocab_ids()

    assert ids == list(range(3, 512))


def test_generating_before_load_is_a_backend_error(tiny_model_dir: Path) -> None:
    backend = PyTorchBackend(make_config(tiny_model_dir), "cpu")

    with pytest.raises(BackendError, match="not loaded"):
        backend.generate([Request(0, [5], 1)])
    assert backend.memory() is None


def test_unload_drops_the_model(make_backend: MakeBackend) -> None:
    backend = make_backend()

    backend.unload()

    assert backend.memory() is None
    with pytest.raises(BackendError, match="not loaded"):
        backend.generate([Request(0, [5], 1)])


def test_a_bad_generate_argument_becomes_a_backend_error(make_backend: MakeBackend) -> None:
    backend = make_backend(passthrough_kwargs={"num_return_sequences": 3})

    with pytest.raises(BackendError) as caught:
        run(backend)

    assert isinstance(caught.value.__cause__, ValueError)


@pytest.mark.parametrize(
    ("passthrough", "message"),
    [({"max_time": 0.0}, "fixed-length"), ({"num_return_sequences": 2}, "4 sequences for 2")],
)
def test_passthrough_that_breaks_the_fixed_work_is_refused(
    make_backend: MakeBackend, passthrough: dict[str, Any], message: str
) -> None:
    backend = make_backend(
        decoder={"mode": "beam", "num_beams": 2},
        pytorch={"batch_size": 2},
        passthrough_kwargs=passthrough,
    )

    with pytest.raises(BackendError, match=message):
        run(backend)


# -- preflight ------------------------------------------------------------------------------


def test_preflight_passes_for_a_complete_local_model(tiny_model_dir: Path) -> None:
    assert PyTorchBackend(make_config(tiny_model_dir), "cpu").preflight() == []


def test_preflight_lists_every_problem_at_once_with_fixes(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    backend = PyTorchBackend(make_config(missing), "cuda:99")

    problems = backend.preflight()

    assert any(f"model directory {missing} does not exist" in p for p in problems)
    assert any("cuda:99" in p for p in problems)
    assert all("fix:" in p for p in problems)


def test_preflight_names_what_an_incomplete_model_dir_lacks(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")

    problems = PyTorchBackend(make_config(tmp_path), "cpu").preflight()

    assert len(problems) == 1
    assert "no weights" in problems[0]


def test_preflight_explains_that_runs_never_download(tiny_model_dir: Path) -> None:
    config = make_config(tiny_model_dir).model_copy(update={"model": "nobody/not-a-model"})

    problems = PyTorchBackend(config, "cpu").preflight()

    assert len(problems) == 1
    assert "Hugging Face cache" in problems[0] and "hf download nobody/not-a-model" in problems[0]


@pytest.mark.parametrize(
    "section",
    [{"load_in_8bit": True}, {"attn_implementation": "flash_attention_2"}],
    ids=["bitsandbytes", "flash-attention"],
)
def test_preflight_reports_gpu_only_settings_on_cpu(
    tiny_model_dir: Path, section: dict[str, Any]
) -> None:
    config = make_config(tiny_model_dir, precision="fp16", pytorch=section)

    problems = PyTorchBackend(config, "cpu").preflight()

    assert any("needs a CUDA GPU, not cpu" in p for p in problems)


def test_no_prompt_token_comes_from_a_cross_request_cache(make_backend: MakeBackend) -> None:
    backend = make_backend(pytorch={"batch_size": 2})
    output = run(backend)

    # Known, not unknown: every generate call starts from an empty KV cache.
    assert [item.cached_input_tokens for item in output.outputs] == [0, 0, 0, 0]
    cache = backend.effective_parameters()["cross_request_cache"]
    assert cache["setting"] is None and cache["enabled"] is False
    assert "empty KV cache" in cache["source"]
