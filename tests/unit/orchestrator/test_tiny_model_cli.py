"""``llem tiny-model``: the shapes it can make, including the one vLLM's CPU build accepts."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from orchestrator.cli import main


def test_for_vllm_cpu_makes_a_head_size_of_64(tmp_path: Path) -> None:
    done = CliRunner().invoke(main, ["tiny-model", str(tmp_path / "m"), "--for-vllm-cpu"])
    assert done.exit_code == 0, done.output
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["hidden_size"] // config["num_attention_heads"] == 64
    assert config["num_key_value_heads"] == config["num_attention_heads"] == 2


def test_the_default_keeps_its_grouped_query_shape(tmp_path: Path) -> None:
    done = CliRunner().invoke(main, ["tiny-model", str(tmp_path / "m")])
    assert done.exit_code == 0, done.output
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert (config["hidden_size"], config["num_attention_heads"],
            config["num_key_value_heads"]) == (64, 4, 2)


def test_a_shape_the_heads_do_not_divide_is_bad_input(tmp_path: Path) -> None:
    done = CliRunner().invoke(main, ["tiny-model", str(tmp_path / "m"), "--hidden-size", "64",
                                     "--heads", "3"])
    assert done.exit_code == 2
    assert "--heads" in done.output
    assert not (tmp_path / "m" / "config.json").exists()
