"""Workloads: turn ``config.dataset`` into the tokenised requests a run measures.

Three kinds of dataset:

- ``synthetic``: exactly ``input_len`` token ids per prompt, drawn with ``random_seed`` from the
  tokenizer's ordinary (non-special) ids, each asking for ``output_len`` tokens. Same config,
  same tokenizer, same requests. With ``load.lengths: uniform`` each prompt is drawn at its
  own length, and asks for its own number of tokens (:func:`harness.load.arrivals.draw_lengths`).
- a built-in prompt set shipped in this package (``llem-prompts-v1``: 40 original prompts,
  questions, summarise-this, code and reasoning).
- a ``.jsonl`` file with one ``{"prompt": "...", "max_new_tokens": 64}`` object per line
  (``max_new_tokens`` optional, default ``output_len``).

Prompt sets are tokenised with the backend's tokenizer, truncated to ``input_len`` tokens and
cycled when they hold fewer than ``n`` prompts. Every repeat of a cycled prompt is made distinct
at its start (:func:`distinct_repeats`), so that no engine can serve it from a cross-request
prefix cache: the window does the work it claims on every backend.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from harness.backends.base import Backend, Request
from harness.errors import BackendError, ConfigError, LlemError, PreflightError
from harness.io import file_sha256
from harness.load.arrivals import draw_lengths, load_seed
from harness.schema.config import BUILTIN_DATASETS, ExperimentConfig
from harness.schema.messages import did_you_mean

SYNTHETIC = "synthetic"
PROMPT_KEYS = ("prompt", "max_new_tokens")
"""Keys a ``.jsonl`` line may hold."""

LINE_FIX = (
    'write one JSON object per line, e.g. {"prompt": "Why is the sky blue?", '
    '"max_new_tokens": 64}; max_new_tokens is optional (default: output_len)'
)
_MAX_PROBLEMS = 10


@dataclass(frozen=True)
class Prompt:
    """One line of a prompt set.

    Attributes:
        text: the prompt.
        max_new_tokens: tokens to generate for it, or None for the config's ``output_len``.
        source: where it came from, ``file, line N``, for error messages.

    """

    text: str
    max_new_tokens: int | None
    source: str


def build_requests(config: ExperimentConfig, backend: Backend) -> list[Request]:
    """Return the ``config.n`` requests of the configured dataset, tokenised by ``backend``.

    Raises:
        ConfigError: a prompt file holds a bad line, no prompts, or a prompt with no tokens.
        PreflightError: a prompt file is missing or unreadable.

    """
    if config.dataset == SYNTHETIC:
        return synthetic_requests(config, backend.vocab_ids())
    prompts = load_prompts(config.dataset)
    # The vocabulary is needed only to mark repeats, i.e. when the set is cycled.
    vocab_ids = backend.vocab_ids() if config.n > len(prompts) else []
    return prompt_requests(prompts, config, backend.encode, vocab_ids)


def synthetic_requests(config: ExperimentConfig, vocab_ids: Sequence[int]) -> list[Request]:
    """Return ``config.n`` prompts of exactly ``input_len`` random ordinary token ids.

    The ids are drawn with ``random_seed`` from the sorted vocabulary, so the result does not
    depend on the order in which the backend lists its ids. With ``load.lengths: uniform``,
    request ``i`` has the ``i``-th drawn prompt length and output length instead; its prompt
    is drawn at that length (not cut from or padded to an ``input_len`` one), so a drawn
    prompt is, like every synthetic prompt, independent ordinary ids throughout: padding it
    with its own ids would repeat them, which a model copies and n-gram speculation exploits.
    """
    population = sorted(set(vocab_ids))
    if not population:
        raise BackendError(
            "the tokenizer offers no ordinary token ids to draw synthetic prompts from",
            fix="use a model whose tokenizer has a non-empty vocabulary, or a prompt dataset",
        )
    input_lens, output_lens = _synthetic_lengths(config)
    rng = random.Random(config.random_seed)  # noqa: S311 - a workload, not cryptography
    return [
        Request(index, rng.choices(population, k=input_len), output_len)
        for index, (input_len, output_len) in enumerate(zip(input_lens, output_lens, strict=True))
    ]


def _synthetic_lengths(config: ExperimentConfig) -> tuple[list[int], list[int]]:
    """The prompt and output length of each of the ``config.n`` synthetic requests.

    ``input_len`` and ``output_len`` each (``load.lengths: fixed``), or drawn uniformly within
    ``load.length_range_ratio`` of them, from the load's seed (``load.seed``, else
    ``random_seed``).
    """
    load = config.load
    if load.lengths == "fixed" or load.length_range_ratio is None:
        return [config.input_len] * config.n, [config.output_len] * config.n
    ratio, seed = load.length_range_ratio, load_seed(config)
    return (draw_lengths(config.input_len, ratio, config.n, seed, "input"),
            draw_lengths(config.output_len, ratio, config.n, seed, "output"))


WARMUP_SEED_SALT = 0x5EED
"""Mixed into ``random_seed`` for warmup prompts, so they never equal the measured ones."""


def warmup_twins(shapes: Sequence[Request], vocab_ids: Sequence[int], seed: int) -> list[Request]:
    """Requests with the shapes of ``shapes`` (lengths, tokens to generate) but fresh tokens.

    Warmup must exercise the same kernels, batch sizes and lengths as the window, but must not
    leave the window's prompts in a prefix cache (vLLM's prefix caching, TensorRT-LLM's KV
    block reuse): a window served partly from cache would measure less work than it claims.
    Tokens are drawn from the ordinary vocabulary with a seed derived from ``random_seed``.
    """
    population = sorted(set(vocab_ids))
    if not population:
        return list(shapes)
    rng = random.Random(seed ^ WARMUP_SEED_SALT)  # noqa: S311 - a workload, not cryptography
    return [Request(request.request_id, rng.choices(population, k=len(request.input_ids)),
                    request.max_new_tokens) for request in shapes]


def prompt_requests(
    prompts: Sequence[Prompt],
    config: ExperimentConfig,
    encode: Callable[[str], list[int]],
    vocab_ids: Sequence[int] = (),
) -> list[Request]:
    """Tokenise ``prompts``, truncate each to ``input_len`` and cycle them to ``config.n``.

    Repeats (every request after the first pass over the set) are made distinct with
    :func:`distinct_repeats`, drawing from ``vocab_ids``.
    """
    encoded = [_encode(prompt, config, encode) for prompt in prompts]
    cycled = [Request(index, *encoded[index % len(encoded)]) for index in range(config.n)]
    return distinct_repeats(cycled, len(encoded), vocab_ids, config.random_seed)


CYCLE_SEED_SALT = 0xC1C1E
"""Mixed into ``random_seed`` for the tokens that mark repeats of a cycled prompt set."""

_MAX_DRAWS = 1000
"""Draws of a marker before a repeat keeps one already used (see :func:`distinct_repeats`)."""


def distinct_repeats(
    requests: Sequence[Request], distinct: int, vocab_ids: Sequence[int], seed: int
) -> list[Request]:
    """Give every repeat its own first tokens, keeping its length and everything after them.

    A cycled prompt set repeats its prompts verbatim, and an engine with a cross-request cache
    (vLLM's prefix caching, TensorRT-LLM's KV-block reuse) would serve every full KV block of a
    repeat from the first copy: less prefill than the workload claims. The first ``distinct``
    requests (one pass over the set) are kept; each later one has its first ``width`` tokens
    replaced by ordinary tokens drawn with a seed derived from ``seed``, redrawn until no other
    request starts with the same ``width`` tokens. A repeat therefore shares no leading KV
    block of any size >= ``width`` with any request, whatever the engine's block size, while
    prompt length, output length and the rest of the prompt stay as they were. ``width`` is
    the fewest tokens whose combinations outnumber twice the requests (1 for any real
    vocabulary and ``n`` up to half its size). A prompt shorter than ``width`` tokens, too
    short to fill any cache block, keeps a used marker after :data:`_MAX_DRAWS` draws.

    Raises:
        BackendError: there are repeats, and fewer than two ordinary token ids to mark them.

    """
    if len(requests) <= distinct:
        return list(requests)
    population = sorted(set(vocab_ids))
    if len(population) < 2:
        raise BackendError(
            "the tokenizer offers fewer than two ordinary token ids to make repeated prompts "
            "distinct", fix="use a model whose tokenizer has a vocabulary, or set n to at most "
            "the number of prompts in the set",
        )
    width = marker_width(len(population), len(requests))
    taken = {tuple(request.input_ids[:width]) for request in requests[:distinct]}
    rng = random.Random(seed ^ CYCLE_SEED_SALT)  # noqa: S311 - a workload, not cryptography
    marked = list(requests[:distinct])
    for request in requests[distinct:]:
        ids = _marked(request.input_ids, width, population, rng, taken)
        marked.append(Request(request.request_id, ids, request.max_new_tokens))
    return marked


def marker_width(vocabulary: int, requests: int) -> int:
    """The marker width for ``requests`` requests drawn from ``vocabulary`` token ids.

    The fewest leading tokens whose combinations (``vocabulary ** width``) are at least twice
    ``requests``, so that a random draw is free at least half the time.
    """
    width = 1
    while vocabulary**width < 2 * requests:
        width += 1
    return width


def _marked(
    ids: list[int], width: int, population: list[int], rng: random.Random,
    taken: set[tuple[int, ...]],
) -> list[int]:
    size = min(width, len(ids))
    marker = tuple(rng.choices(population, k=size))
    for _ in range(_MAX_DRAWS):
        if marker not in taken:
            break
        marker = tuple(rng.choices(population, k=size))
    taken.add(marker)
    return [*marker, *ids[size:]]


def _encode(
    prompt: Prompt, config: ExperimentConfig, encode: Callable[[str], list[int]]
) -> tuple[list[int], int]:
    input_ids = encode(prompt.text)[: config.input_len]
    if not input_ids:
        raise ConfigError(
            f"{prompt.source}: the prompt encodes to no tokens", fix="give the line some text"
        )
    return input_ids, prompt.max_new_tokens or config.output_len


def load_prompts(dataset: str) -> list[Prompt]:
    """Read and check a built-in prompt set or a ``.jsonl`` file.

    Raises:
        PreflightError: the file is missing or unreadable.
        ConfigError: a line is bad (the first one is named, with its line number) or the
            file holds no prompts.

    """
    source, text = _read_dataset(dataset)
    prompts, problems = parse_prompts(text, source)
    if problems:
        more = f" (and {len(problems) - 1} more bad lines)" if len(problems) > 1 else ""
        raise ConfigError(problems[0] + more, fix=LINE_FIX)
    if not prompts:
        raise ConfigError(f"{source} holds no prompts", fix=LINE_FIX)
    return prompts


def check_dataset(config: ExperimentConfig) -> list[str]:
    """Return every problem with the configured dataset (empty when it can be used).

    For preflight: the file exists, is readable, has the content the configuration pinned
    (``dataset_sha256``) and every line is well formed.
    """
    if config.dataset == SYNTHETIC:
        return []
    try:
        source, text = _read_dataset(config.dataset)
    except LlemError as error:
        return [str(error)]
    changed = _content_changed(config)
    if changed:
        return [changed]
    prompts, problems = parse_prompts(text, source)
    if not problems and not prompts:
        problems = [f"{source} holds no prompts"]
    return [str(ConfigError(problem, fix=LINE_FIX)) for problem in problems[:_MAX_PROBLEMS]]


def _content_changed(config: ExperimentConfig) -> str | None:
    if config.dataset_sha256 is None or config.dataset in BUILTIN_DATASETS:
        return None
    path = Path(config.dataset).expanduser()
    found = file_sha256(path)
    if found == config.dataset_sha256:
        return None
    return str(ConfigError(
        f"dataset file {path} has changed since the study was planned (content SHA-256 "
        f"{found[:12]}..., the configuration pins {config.dataset_sha256[:12]}...)",
        fix="restore the file, or start a new study with llem run FILE: a changed workload "
        "is another configuration"))


def parse_prompts(text: str, source: str) -> tuple[list[Prompt], list[str]]:
    """Parse JSON Lines text into prompts and a list of problems, one per bad line.

    Blank lines are skipped. Problems read ``<source>, line <N>: <what is wrong>``.
    """
    prompts: list[Prompt] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{source}, line {number}"
        try:
            prompts.append(_parse_line(line, where))
        except ValueError as error:
            problems.append(f"{where}: {error}")
    return prompts, problems


def _parse_line(line: str, where: str) -> Prompt:
    try:
        record: Any = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON ({error.msg} at column {error.colno})") from error
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    _check_keys(record)
    text = record["prompt"]
    if not isinstance(text, str) or not text.strip():
        raise ValueError("'prompt' must be a non-empty string")
    max_new_tokens = record.get("max_new_tokens")
    if max_new_tokens is not None and not _positive_int(max_new_tokens):
        raise ValueError(f"'max_new_tokens' must be a positive integer, got {max_new_tokens!r}")
    return Prompt(text, max_new_tokens, where)


def _check_keys(record: dict[str, Any]) -> None:
    for key in record:
        if key not in PROMPT_KEYS:
            guess = did_you_mean(key, PROMPT_KEYS)
            hint = f"; did you mean '{guess}'?" if guess else ""
            raise ValueError(f"unknown key '{key}'{hint} (allowed: {', '.join(PROMPT_KEYS)})")
    if "prompt" not in record:
        raise ValueError("missing key 'prompt'")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _read_dataset(dataset: str) -> tuple[str, str]:
    """Return (name for messages, text) of a built-in prompt set or a ``.jsonl`` file."""
    if dataset in BUILTIN_DATASETS:
        return dataset, _read_builtin(dataset)
    path = Path(dataset).expanduser()
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise PreflightError(
            f"dataset file {path} {what}",
            fix=(
                "point dataset: at an existing .jsonl file (a relative path is relative to "
                "the file it is written in: the study file, or the base: file that sets it), "
                f"or use synthetic or {', '.join(BUILTIN_DATASETS)}"
            ),
        )
    try:
        return str(path), path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"dataset file {path} is not UTF-8 text", fix=LINE_FIX) from error
    except OSError as error:
        raise PreflightError(
            f"dataset file {path} cannot be read: {error.strerror}",
            fix="make the file readable by the user the harness runs as",
        ) from error


def _read_builtin(name: str) -> str:
    resource = resources.files(__name__).joinpath(f"{name}.jsonl")
    try:
        return resource.read_text(encoding="utf-8")
    except OSError as error:
        raise PreflightError(
            f"built-in dataset {name} is missing from this installation",
            fix="reinstall llem; the prompt set ships inside the harness package",
        ) from error


__all__ = [
    "LINE_FIX",
    "PROMPT_KEYS",
    "SYNTHETIC",
    "Prompt",
    "build_requests",
    "check_dataset",
    "distinct_repeats",
    "load_prompts",
    "parse_prompts",
    "prompt_requests",
    "synthetic_requests",
    "warmup_twins",
]
