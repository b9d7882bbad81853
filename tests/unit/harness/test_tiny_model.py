from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.tiny_model import SPECIAL_TOKENS, build_tiny_model, main

pytest.importorskip("torch")
pytest.importorskip("transformers")


def test_model_dir_loads_offline_with_auto_classes(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, local_files_only=True)

    assert (tiny_model_dir / "model.safetensors").is_file()
    assert model.config.model_type == "llama"
    assert model.config.num_hidden_layers == 2
    assert model.config.hidden_size == 64
    assert model.config.num_attention_heads == 4
    assert model.config.num_key_value_heads == 2
    assert model.config.vocab_size == 512
    assert len(tokenizer) == 512
    assert [tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token] == list(SPECIAL_TOKENS)
    assert tokenizer.all_special_ids == [0, 1, 2]


def test_tokenizer_is_byte_level_and_round_trips_any_text(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir, local_files_only=True)
    text = "Energy per token: 0.42 J — naïve café, 東京 🚀\n\tdef f(x): return x"
    ids = tokenizer.encode(text, add_special_tokens=False)

    assert tokenizer.decode(ids) == text
    # Trained merges shorten common English well below one token per byte.
    common = "Summarise the following paragraph in two sentences."
    assert len(tokenizer.encode(common, add_special_tokens=False)) < len(common) // 2


def test_same_seed_gives_identical_files_and_another_seed_other_weights(tmp_path: Path) -> None:
    first = build_tiny_model(tmp_path / "a", layers=1, hidden_size=32, heads=2, kv_heads=1)
    second = build_tiny_model(tmp_path / "b", layers=1, hidden_size=32, heads=2, kv_heads=1)
    other = build_tiny_model(tmp_path / "c", layers=1, hidden_size=32, heads=2, kv_heads=1, seed=1)

    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert (first / "model.safetensors").read_bytes() != (other / "model.safetensors").read_bytes()


def test_building_leaves_the_global_torch_rng_alone(tmp_path: Path) -> None:
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_model(tmp_path / "m", layers=1, hidden_size=32, heads=2, kv_heads=1)

    assert torch.equal(torch.rand(3), expected)


def test_options_shape_the_model(tmp_path: Path) -> None:
    out = build_tiny_model(
        tmp_path / "m",
        layers=3,
        hidden_size=48,
        heads=6,
        kv_heads=3,
        vocab_size=400,
        tie_word_embeddings=True,
    )
    config = json.loads((out / "config.json").read_text())
    vocab = json.loads((out / "tokenizer.json").read_text())["model"]["vocab"]

    assert config["num_hidden_layers"] == 3
    assert config["hidden_size"] == 48
    assert config["num_attention_heads"] == 6
    assert config["num_key_value_heads"] == 3
    assert config["vocab_size"] == 400
    assert config["tie_word_embeddings"] is True
    assert len(vocab) == 400


def test_bfloat16_weights_are_stored_as_bfloat16_with_the_same_values(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    shape = {"layers": 1, "hidden_size": 32, "heads": 2, "kv_heads": 1}
    full = build_tiny_model(tmp_path / "fp32", **shape)
    half = build_tiny_model(tmp_path / "bf16", **shape, dtype="bfloat16", device="cpu")

    assert json.loads((half / "config.json").read_text())["dtype"] == "bfloat16"
    weights_fp32 = load_file(full / "model.safetensors")
    weights_bf16 = load_file(half / "model.safetensors")
    assert {t.dtype for t in weights_bf16.values()} == {torch.bfloat16}
    for name, tensor in weights_fp32.items():  # the same seeded draw, rounded to bfloat16
        assert torch.equal(weights_bf16[name], tensor.to(torch.bfloat16)), name
    assert (full / "model.safetensors").stat().st_size > 1.9 * (
        half / "model.safetensors").stat().st_size


def test_an_unknown_dtype_is_rejected_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dtype"):
        build_tiny_model(tmp_path / "m", dtype="float8")

    assert not any(tmp_path.iterdir())


def test_refuses_a_non_empty_directory_and_leaves_no_staging_behind(tmp_path: Path) -> None:
    target = tmp_path / "m"
    target.mkdir()
    (target / "keep.txt").write_text("mine")

    with pytest.raises(FileExistsError, match="not empty"):
        build_tiny_model(target)

    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_successful_build_leaves_only_the_model_dir(tmp_path: Path) -> None:
    build_tiny_model(tmp_path / "m", layers=1, hidden_size=32, heads=2, kv_heads=1)

    assert [p.name for p in tmp_path.iterdir()] == ["m"]
    assert (tmp_path / "m").stat().st_mode & 0o755 == 0o755


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden_size": 30}, "divisible"),
        ({"heads": 4, "kv_heads": 3}, "divisible"),
        ({"vocab_size": 100}, "at least 259"),
        ({"layers": 0}, "positive"),
    ],
)
def test_inconsistent_shapes_are_rejected_before_anything_is_written(
    tmp_path: Path, kwargs: dict[str, int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build_tiny_model(tmp_path / "m", **kwargs)

    assert not any(tmp_path.iterdir())


def test_command_line_builds_with_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shape = ["--layers", "1", "--hidden-size", "32", "--heads", "2", "--kv-heads", "1"]
    code = main([str(tmp_path / "m"), *shape, "--seed", "7", "--dtype", "bfloat16"])

    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert code == 0
    assert config["dtype"] == "bfloat16"
    assert capsys.readouterr().out.strip() == str(tmp_path / "m")
    assert config["num_hidden_layers"] == 1
    assert config["hidden_size"] == 32


def test_command_line_reports_an_existing_directory_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "x").write_text("")

    assert main([str(tmp_path / "m")]) == 2
    assert "already exists" in capsys.readouterr().err
