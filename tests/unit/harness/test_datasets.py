from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from harness.backends.base import Backend, BatchCallback, GenerationOutput, Request
from harness.datasets import (
    Prompt,
    build_requests,
    check_dataset,
    load_prompts,
    prompt_requests,
)
from harness.errors import ConfigError, PreflightError
from harness.load.arrivals import draw_lengths
from harness.schema.config import ExperimentConfig
from harness.schema.result import MemoryMetrics


class CharBackend(Backend):
    """A tokenizer-only backend: one token per character (its code point)."""

    name = "chars"

    def encode(self, text: str) -> list[int]:
        return [ord(char) for char in text]

    def vocab_ids(self) -> list[int]:
        return list(range(200, 3, -1))  # deliberately unsorted

    def preflight(self) -> list[str]:
        return []

    def load(self) -> None:
        raise NotImplementedError

    def warmup_requests(self, requests: list[Request]) -> list[Request]:
        raise NotImplementedError

    def generate(
        self, requests: list[Request], on_batch: BatchCallback | None = None
    ) -> GenerationOutput:
        raise NotImplementedError

    def synchronize(self) -> None:
        raise NotImplementedError

    def effective_parameters(self) -> dict[str, Any]:
        raise NotImplementedError

    def memory(self) -> MemoryMetrics | None:
        raise NotImplementedError

    def parameter_counts(self) -> tuple[int, int]:
        raise NotImplementedError

    def versions(self) -> dict[str, str]:
        raise NotImplementedError


def make_config(**overrides: Any) -> ExperimentConfig:
    values: dict[str, Any] = {
        "model": "m",
        "backend": "pytorch",
        "n": 5,
        "input_len": 12,
        "output_len": 7,
    }
    values.update(overrides)
    return ExperimentConfig(**values)


def requests_for(**overrides: Any) -> list[Request]:
    config = make_config(**overrides)
    return build_requests(config, CharBackend(config, "cpu"))


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- synthetic ------------------------------------------------------------------------------


def test_synthetic_prompts_have_exactly_input_len_vocab_tokens() -> None:
    requests = requests_for(n=6, input_len=33, output_len=9)

    assert [r.request_id for r in requests] == list(range(6))
    assert all(len(r.input_ids) == 33 for r in requests)
    assert all(r.max_new_tokens == 9 for r in requests)
    assert all(4 <= token <= 200 for r in requests for token in r.input_ids)


def test_synthetic_prompts_are_seeded() -> None:
    first = requests_for(random_seed=7)
    again = requests_for(random_seed=7)
    other = requests_for(random_seed=8)

    assert first == again
    assert [r.input_ids for r in first] != [r.input_ids for r in other]
    assert first[0].input_ids != first[1].input_ids


def test_fixed_synthetic_prompts_are_the_seeded_draw_they_always_were() -> None:
    # The ids of a configuration must not change under it (results would stop comparing).
    rng = random.Random(7)
    population = list(range(4, 201))
    expected = [rng.choices(population, k=12) for _ in range(5)]

    assert [r.input_ids for r in requests_for(random_seed=7)] == expected


def test_uniform_lengths_draw_each_synthetic_prompt_at_its_own_length() -> None:
    requests = requests_for(n=40, input_len=20, output_len=10, random_seed=3,
                            load={"lengths": "uniform", "length_range_ratio": 0.5})

    assert [len(r.input_ids) for r in requests] == draw_lengths(20, 0.5, 40, 3, "input")
    assert [r.max_new_tokens for r in requests] == draw_lengths(10, 0.5, 40, 3, "output")
    assert len({len(r.input_ids) for r in requests}) > 5
    assert all(4 <= token <= 200 for r in requests for token in r.input_ids)


def test_uniform_lengths_follow_the_load_seed() -> None:
    uniform = {"lengths": "uniform", "length_range_ratio": 0.5}
    own = requests_for(n=40, random_seed=3, backend="vllm",
                       load={**uniform, "mode": "serving", "request_rate": 1, "seed": 9})

    assert [len(r.input_ids) for r in own] == draw_lengths(12, 0.5, 40, 9, "input")


def test_synthetic_prompts_with_the_real_tokenizer_avoid_special_tokens(
    tiny_model_dir: Path,
) -> None:
    from harness.backends.pytorch import PyTorchBackend

    config = make_config(model=str(tiny_model_dir), n=3, input_len=50)
    backend = PyTorchBackend(config, "cpu")
    requests = build_requests(config, backend)

    assert all(len(r.input_ids) == 50 for r in requests)
    assert not {0, 1, 2} & {token for r in requests for token in r.input_ids}


# -- built-in prompt set --------------------------------------------------------------------


def test_builtin_prompt_set_ships_forty_prompts() -> None:
    prompts = load_prompts("llem-prompts-v1")

    assert len(prompts) == 40
    assert len({p.text for p in prompts}) == 40
    assert all(p.max_new_tokens is None for p in prompts)
    assert any("def " in p.text or "SELECT" in p.text for p in prompts)


def test_builtin_prompts_are_truncated_to_input_len_and_cycled_to_n() -> None:
    requests = requests_for(dataset="llem-prompts-v1", n=45, input_len=20, output_len=5)
    prompts = load_prompts("llem-prompts-v1")

    assert len(requests) == 45
    assert all(len(r.input_ids) <= 20 for r in requests)
    assert requests[0].input_ids == [ord(c) for c in prompts[0].text[:20]]
    assert len(requests[40].input_ids) == len(requests[0].input_ids)
    assert requests[40].request_id == 40
    assert all(r.max_new_tokens == 5 for r in requests)


# -- cycled prompt sets: every repeat is distinct -------------------------------------------

BLOCK = 16
"""vLLM's default KV-cache block (tokens): two requests whose first BLOCK tokens agree share a
cacheable block."""


def first_blocks(requests: list[Request], block: int = BLOCK) -> set[tuple[int, ...]]:
    return {tuple(r.input_ids[:block]) for r in requests}


def test_cycled_builtin_prompts_share_no_first_block_and_keep_their_lengths() -> None:
    requests = requests_for(dataset="llem-prompts-v1", n=120, input_len=64, output_len=5)
    prompts = load_prompts("llem-prompts-v1")
    originals = [[ord(c) for c in p.text[:64]] for p in prompts]

    assert len(requests) == 120
    assert len(first_blocks(requests)) == 120
    # A repeat's first two tokens are its own, so it shares no block of any size >= 2.
    heads = [tuple(r.input_ids[:2]) for r in requests]
    assert all(heads.count(head) == 1 for head in heads[40:])
    assert [len(r.input_ids) for r in requests] == [len(originals[i % 40]) for i in range(120)]
    assert [r.input_ids for r in requests[:40]] == originals  # the first pass is untouched
    for request in requests[40:]:
        original = originals[request.request_id % 40]
        assert request.input_ids != original
        assert request.input_ids[2:] == original[2:]  # only the leading tokens changed
        assert set(request.input_ids[:2]) <= set(range(4, 201))  # ordinary vocabulary ids


def test_cycled_jsonl_prompts_are_distinct_and_keep_their_lengths_and_outputs(
    tmp_path: Path,
) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [
        json.dumps({"prompt": "The same long system preamble, then question one?",
                    "max_new_tokens": 3}),
        json.dumps({"prompt": "A second prompt that is long enough to fill a block."}),
    ])

    requests = requests_for(dataset=str(path), n=9, input_len=40)

    assert len(first_blocks(requests)) == 9
    assert [len(r.input_ids) for r in requests] == [40, 40] * 4 + [40]
    assert [r.max_new_tokens for r in requests] == [3, 7] * 4 + [3]


def test_distinct_repeats_are_seeded() -> None:
    first = requests_for(dataset="llem-prompts-v1", n=50, input_len=30, random_seed=3)
    again = requests_for(dataset="llem-prompts-v1", n=50, input_len=30, random_seed=3)
    other = requests_for(dataset="llem-prompts-v1", n=50, input_len=30, random_seed=4)

    assert first == again
    assert [r.input_ids for r in first[40:]] != [r.input_ids for r in other[40:]]
    assert [r.input_ids for r in first[:40]] == [r.input_ids for r in other[:40]]


def test_a_tiny_vocabulary_gets_a_wider_marker_and_repeats_stay_distinct() -> None:
    config = make_config(dataset="llem-prompts-v1", n=40, input_len=20)
    prompts = [Prompt("abcdefghijklmnopqrstu", None, "line 1")]

    requests = prompt_requests(prompts, config, lambda text: [ord(c) for c in text], [5, 6, 7])

    assert len(first_blocks(requests)) == 40
    assert all(len(r.input_ids) == 20 for r in requests)


def test_synthetic_prompts_share_no_first_block() -> None:
    requests = requests_for(n=300, input_len=BLOCK)

    assert len(first_blocks(requests)) == 300


# -- .jsonl files ---------------------------------------------------------------------------


def test_jsonl_max_new_tokens_per_line_overrides_output_len(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "p.jsonl",
        [
            json.dumps({"prompt": "short one", "max_new_tokens": 3}),
            "",
            json.dumps({"prompt": "a much longer prompt than twelve characters"}),
        ],
    )

    requests = requests_for(dataset=str(path), n=3)

    assert [r.max_new_tokens for r in requests] == [3, 7, 3]
    assert requests[0].input_ids == [ord(c) for c in "short one"]
    assert len(requests[1].input_ids) == 12


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"prompt": "ok"', "not valid JSON"),
        ('["a list"]', "expected a JSON object, got list"),
        ('{"max_new_tokens": 4}', "missing key 'prompt'"),
        ('{"prompt": ""}', "non-empty string"),
        ('{"prompt": 12}', "non-empty string"),
        ('{"prompt": "x", "max_new_tokens": 0}', "positive integer, got 0"),
        ('{"prompt": "x", "max_new_tokens": "8"}', "positive integer, got '8'"),
        ('{"prompt": "x", "max_new_tokens": true}', "positive integer, got True"),
        ('{"prompt": "x", "max_new_token": 8}', "did you mean 'max_new_tokens'"),
    ],
)
def test_a_bad_line_is_a_config_error_naming_file_line_and_fix(
    tmp_path: Path, line: str, reason: str
) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", ['{"prompt": "fine"}', "", line])

    with pytest.raises(ConfigError) as caught:
        requests_for(dataset=str(path))

    message = str(caught.value)
    assert f"{path}, line 3: " in message
    assert reason in message
    assert caught.value.fix is not None and '"prompt"' in caught.value.fix


def test_missing_jsonl_file_is_a_preflight_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.jsonl"

    with pytest.raises(PreflightError, match="does not exist") as caught:
        requests_for(dataset=str(path))

    assert str(path) in str(caught.value)
    assert caught.value.fix


def test_the_fix_for_a_missing_dataset_says_where_relative_paths_resolve(tmp_path: Path) -> None:
    # A relative dataset: path resolves against the file it is written in, not the directory
    # llem runs in (orchestrator.study.inputs).
    with pytest.raises(PreflightError) as caught:
        requests_for(dataset=str(tmp_path / "nowhere.jsonl"))

    fix = caught.value.fix or ""
    assert "working directory" not in fix
    assert "relative to the file it is written in" in fix


def test_a_file_without_prompts_is_a_config_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "empty.jsonl", ["", "   "])

    with pytest.raises(ConfigError, match="holds no prompts"):
        requests_for(dataset=str(path))


def test_a_prompt_without_tokens_is_named(tmp_path: Path) -> None:
    config = make_config(dataset=str(write_jsonl(tmp_path / "p.jsonl", ['{"prompt": "hi"}'])))

    class NoTokens(CharBackend):
        def encode(self, text: str) -> list[int]:
            return []

    with pytest.raises(ConfigError, match="line 1: the prompt encodes to no tokens"):
        build_requests(config, NoTokens(config, "cpu"))


# -- preflight ------------------------------------------------------------------------------


def test_check_dataset_accepts_synthetic_builtin_and_good_files(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", ['{"prompt": "x"}'])

    assert check_dataset(make_config()) == []
    assert check_dataset(make_config(dataset="llem-prompts-v1")) == []
    assert check_dataset(make_config(dataset=str(path))) == []


def test_check_dataset_lists_every_bad_line(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", ["{", '{"prompt": "x"}', '{"prompt": 1}'])

    problems = check_dataset(make_config(dataset=str(path)))

    assert len(problems) == 2
    assert "line 1" in problems[0] and "line 3" in problems[1]
    assert all("fix:" in problem for problem in problems)


def test_check_dataset_reports_a_missing_file_or_a_directory(tmp_path: Path) -> None:
    missing = check_dataset(make_config(dataset=str(tmp_path / "gone.jsonl")))
    (tmp_path / "dir.jsonl").mkdir()
    directory = check_dataset(make_config(dataset=str(tmp_path / "dir.jsonl")))

    assert len(missing) == 1 and "does not exist" in missing[0] and "fix:" in missing[0]
    assert len(directory) == 1 and "is a directory" in directory[0]


def test_warmup_twins_keep_shapes_but_share_no_prompt_with_the_window():
    from harness.backends.base import Request
    from harness.datasets import warmup_twins

    vocab = list(range(3, 500))
    window = [Request(i, [7 + i] * (16 + i), 8 + i) for i in range(4)]
    twins = warmup_twins(window, vocab, seed=42)
    assert [len(t.input_ids) for t in twins] == [len(w.input_ids) for w in window]
    assert [t.max_new_tokens for t in twins] == [w.max_new_tokens for w in window]
    window_prefixes = {tuple(w.input_ids[:8]) for w in window}
    assert not any(tuple(t.input_ids[:8]) in window_prefixes for t in twins)
    assert all(set(t.input_ids) <= set(vocab) for t in twins)
    assert warmup_twins(window, vocab, seed=42) == twins  # seeded: reproducible


def test_a_dataset_whose_content_differs_from_its_pinned_digest_is_refused(tmp_path):
    import hashlib

    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "hello"}\n')
    pinned = hashlib.sha256(path.read_bytes()).hexdigest()
    config = ExperimentConfig(model="m", backend="pytorch", dataset=str(path),
                              dataset_sha256=pinned)
    assert check_dataset(config) == []
    path.write_text('{"prompt": "hello, edited"}\n')
    (problem,) = check_dataset(config)
    assert str(path) in problem and "changed since the study was planned" in problem
