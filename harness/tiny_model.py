"""Build a tiny Llama-style model with random weights, saved as a local model directory.

The model exists so that tests, demos and benchmarks can run the real PyTorch backend end to
end with no access to the model hub: its tokenizer is a byte-level BPE trained on the fly on
text shipped with the harness, its weights are random but seeded, and the result loads with
``AutoTokenizer`` / ``AutoModelForCausalLM`` from the directory alone.

Run ``python -m harness.tiny_model OUT_DIR`` to build one from the command line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = ("<|bos|>", "<|eos|>", "<|pad|>")
"""Special tokens (beginning of sequence, end of sequence, padding), in id order 0, 1, 2."""
BOS, EOS, PAD = SPECIAL_TOKENS
MAX_POSITIONS = 4096
"""Longest sequence (prompt + output tokens) the model accepts."""
DTYPES = ("float32", "bfloat16", "float16")
"""Element types the weights can be stored in."""

_EXTRA_TEXT = """\
The quick brown fox jumps over the lazy dog. Energy is measured in joules and power in watts;
one watt is one joule per second. A kilowatt-hour is 3.6 million joules.
def main() -> None:
    for index, value in enumerate(values):
        if value is None:
            continue
        print(f"{index}: {value}")
SELECT name, COUNT(*) AS total FROM requests GROUP BY name ORDER BY total DESC;
Numbers: 0 1 2 3 4 5 6 7 8 9 10 16 32 64 100 128 256 512 1000 1024 2048 4096.
"""


@dataclass(frozen=True)
class TinyModelSpec:
    """Shape of the tiny model.

    Attributes:
        layers: decoder layers.
        hidden_size: width of the residual stream.
        heads: attention heads.
        kv_heads: key/value heads (grouped-query attention when below ``heads``).
        vocab_size: tokenizer target size and embedding rows.
        seed: seed of the random weights.
        tie_word_embeddings: share the input embedding with the output projection.
        dtype: element type of the stored weights (one of :data:`DTYPES`).
        device: torch device the weights are drawn on ("cpu", "cuda:0").

    """

    layers: int = 2
    hidden_size: int = 64
    heads: int = 4
    kv_heads: int = 2
    vocab_size: int = 512
    seed: int = 0
    tie_word_embeddings: bool = False
    dtype: str = "float32"
    device: str = "cpu"


def build_tiny_model(
    out_dir: Path,
    *,
    layers: int = 2,
    hidden_size: int = 64,
    heads: int = 4,
    kv_heads: int = 2,
    vocab_size: int = 512,
    seed: int = 0,
    tie_word_embeddings: bool = False,
    dtype: str = "float32",
    device: str = "cpu",
) -> Path:
    """Build a tiny random Llama-style causal LM and its tokenizer into ``out_dir``.

    The directory appears complete or not at all: everything is written into a temporary
    sibling directory that is renamed into place at the end. The same arguments give the same
    files (weights, config and tokenizer).

    Args:
        out_dir: directory to create; it must not exist yet (an empty directory is replaced).
        layers: decoder layers.
        hidden_size: width of the residual stream; must be divisible by ``heads``.
        heads: attention heads.
        kv_heads: key/value heads; must divide ``heads``.
        vocab_size: tokenizer target size and embedding rows (at least 259: 256 byte tokens
            and 3 special tokens; the rest are BPE merges).
        seed: seed of the random weights.
        tie_word_embeddings: share the input embedding with the output projection.
        dtype: element type of the stored weights: float32, or bfloat16 / float16 (the same
            seeded draw, rounded; half the file of a ~1B model's 4.4 GB).
        device: where the weights are drawn; "cuda:N" draws a ~1B model in well under a
            second, with the GPU's random generator (seeded, so the same device gives the same
            files, but not the same values as "cpu").

    Returns:
        ``out_dir``, ready for ``from_pretrained(out_dir, local_files_only=True)``.

    Raises:
        FileExistsError: ``out_dir`` exists and is not empty.
        ValueError: the shape is inconsistent.

    """
    spec = TinyModelSpec(
        layers, hidden_size, heads, kv_heads, vocab_size, seed, tie_word_embeddings, dtype,
        device,
    )
    _check_spec(spec)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} already exists and is not empty; choose a new directory")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with _staging_dir(out_dir) as staging:
        _write_tokenizer(staging, spec)
        _write_model(staging, spec)
        _make_readable(staging)
        staging.replace(out_dir)
    return out_dir


def _check_spec(spec: TinyModelSpec) -> None:
    if min(spec.layers, spec.hidden_size, spec.heads, spec.kv_heads) < 1:
        raise ValueError("layers, hidden_size, heads and kv_heads must be positive")
    if spec.hidden_size % spec.heads or spec.heads % spec.kv_heads:
        raise ValueError(
            f"hidden_size ({spec.hidden_size}) must be divisible by heads ({spec.heads}) and "
            f"heads by kv_heads ({spec.kv_heads})"
        )
    if (spec.hidden_size // spec.heads) % 2:
        raise ValueError("hidden_size / heads must be even (rotary embeddings rotate pairs)")
    if spec.dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {spec.dtype!r}")
    minimum = 256 + len(SPECIAL_TOKENS)
    if spec.vocab_size < minimum:
        raise ValueError(f"vocab_size must be at least {minimum}, got {spec.vocab_size}")


@contextlib.contextmanager
def _staging_dir(out_dir: Path) -> Iterator[Path]:
    # A sibling on the same file system, so the final rename is atomic.
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".tmp"))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _make_readable(directory: Path) -> None:
    # mkdtemp creates a private directory; a model directory is meant to be shared (for
    # example mounted read-only into a container running as another user).
    directory.chmod(0o755)
    for path in directory.iterdir():
        path.chmod(0o644)


def training_text() -> list[str]:
    """Text the tokenizer is trained on: the built-in prompt set plus a few lines of prose/code."""
    prompt_file = resources.files("harness.datasets").joinpath("llem-prompts-v1.jsonl")
    lines = prompt_file.read_text(encoding="utf-8").splitlines()
    prompts = [json.loads(line)["prompt"] for line in lines if line.strip()]
    return [*prompts, _EXTRA_TEXT]


def _write_tokenizer(directory: Path, spec: TinyModelSpec) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_text(), trainer)
    wrapped = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        model_max_length=MAX_POSITIONS,
    )
    wrapped.save_pretrained(str(directory))
    _use_portable_tokenizer_class(directory / "tokenizer_config.json")


def _use_portable_tokenizer_class(config_path: Path) -> None:
    # transformers 5 records its own class name, which transformers 4 cannot resolve; the
    # generic fast-tokenizer name loads the same tokenizer.json in both.
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _write_model(directory: Path, spec: TinyModelSpec) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**_llama_config_kwargs(spec))
    device = torch.device(spec.device)
    # A private RNG stream: seeding must not disturb the caller's global torch RNG (nor, on a
    # GPU, that device's generator).
    forked = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked), device:
        torch.manual_seed(spec.seed)
        # Drawn in float32 and rounded, so a bfloat16 model holds the float32 model's values.
        model = LlamaForCausalLM(config).to(getattr(torch, spec.dtype))
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=0, eos_token_id=1, pad_token_id=2
    )
    with _quiet_progress_bars():
        model.save_pretrained(str(directory), safe_serialization=True)


def _llama_config_kwargs(spec: TinyModelSpec) -> dict[str, Any]:
    return {
        "vocab_size": spec.vocab_size,
        "hidden_size": spec.hidden_size,
        "intermediate_size": 4 * spec.hidden_size,
        "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.heads,
        "num_key_value_heads": spec.kv_heads,
        "max_position_embeddings": MAX_POSITIONS,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 2,
        "tie_word_embeddings": spec.tie_word_embeddings,
        "dtype": spec.dtype,
    }


@contextlib.contextmanager
def _quiet_progress_bars() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m harness.tiny_model OUT_DIR [--layers N ...]``."""
    parser = argparse.ArgumentParser(
        prog="python -m harness.tiny_model",
        description="Build a tiny random Llama-style model as a local model directory.",
    )
    parser.add_argument("out_dir", type=Path, help="directory to create (must not exist)")
    defaults = TinyModelSpec()
    for name in ("layers", "hidden_size", "heads", "kv_heads", "vocab_size", "seed"):
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=int, default=getattr(defaults, name), dest=name)
    parser.add_argument("--tie-word-embeddings", action="store_true")
    parser.add_argument("--dtype", choices=DTYPES, default=defaults.dtype)
    parser.add_argument("--device", default=defaults.device, help="where weights are drawn")
    args = parser.parse_args(argv)
    try:
        path = build_tiny_model(
            args.out_dir,
            layers=args.layers,
            hidden_size=args.hidden_size,
            heads=args.heads,
            kv_heads=args.kv_heads,
            vocab_size=args.vocab_size,
            seed=args.seed,
            tie_word_embeddings=args.tie_word_embeddings,
            dtype=args.dtype,
            device=args.device,
        )
    except (FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
