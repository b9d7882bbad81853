"""The dry run's arithmetic against values worked out by hand (written out below, not recomputed).

The model: a Llama-style decoder with grouped-query attention.
  hidden 256, 8 query heads of dim 32, 2 KV heads, 4 layers, MLP 512, vocab 1000, untied head.
  attention per layer = q 256x256 + o 256x256 + k 256x64 + v 256x64 = 163,840
  MLP per layer       = 3 x 256 x 512                             = 393,216
  4 layers            = 4 x (163,840 + 393,216)                    = 2,228,224
  embeddings + head   = 2 x 1000 x 256                             = 512,000
  parameters                                                       = 2,740,224
KV elements per token and sequence: 2 (K and V) x 4 layers x 2 KV heads x 32 = 512.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from harness.schema.config import ExperimentConfig
from orchestrator.cli import main
from orchestrator.estimate import estimate_run_s, estimate_vram, find_config, shape_of

GQA_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 256,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "num_hidden_layers": 4,
    "intermediate_size": 512,
    "vocab_size": 1000,
    "tie_word_embeddings": False,
}

WORKLOAD = {"model": "org/gqa", "n": 64, "input_len": 100, "output_len": 28,
            "warmup": {"n_warmup": 5, "min_seconds": 0}}
"""64 prompts of 100 + 28 = 128 tokens: 8,192 tokens in all."""


def config(**values: Any) -> ExperimentConfig:
    return ExperimentConfig.model_validate({**WORKLOAD, **values})


SHAPE = shape_of(GQA_CONFIG)


def test_the_shape_has_the_hand_counted_parameters() -> None:
    assert (SHAPE.kv_heads, SHAPE.head_dim) == (2, 32)
    assert SHAPE.parameters == 2_740_224


def test_vllm_with_grouped_query_attention_and_tensor_parallelism() -> None:
    # bf16, max_num_seqs 16 (< n 64), tensor_parallel_size 2:
    #   weights  2,740,224 x 2 B                 = 5,480,448 B   = 0.005480448 GB
    #   KV cache 512 x 128 tokens x 16 seqs x 2 B = 2,097,152 B  = 0.002097152 GB
    #            (with all 8 heads as KV heads it would be 4x that)
    #   overhead 1 GB + 10 % of the weights      = 1.0005480448 GB
    #   per GPU  (0.005480448 + 0.002097152 + 1.0005480448) / 2 = 0.5040628224 GB
    run = config(backend="vllm", precision="bf16",
                 vllm={"max_num_seqs": 16, "tensor_parallel_size": 2})
    vram = estimate_vram(run, SHAPE)
    assert vram.weights_gb == pytest.approx(0.005480448)
    assert vram.kv_cache_gb == pytest.approx(0.002097152)
    assert vram.overhead_gb == pytest.approx(1.0005480448)
    assert vram.parallel == 2
    assert vram.per_gpu_gb == pytest.approx(0.5040628224)


def test_vllm_fp8_kv_cache_halves_the_cache() -> None:
    # kv_cache_dtype fp8: 1 B per element: 512 x 128 x 16 x 1 B = 1,048,576 B = 0.001048576 GB
    run = config(backend="vllm", precision="bf16",
                 vllm={"max_num_seqs": 16, "kv_cache_dtype": "fp8"})
    assert estimate_vram(run, SHAPE).kv_cache_gb == pytest.approx(0.001048576)


def test_tensorrt_with_int4_weights_and_tensor_times_pipeline_parallelism() -> None:
    # fp16 compute, int4_awq weights, tp 2 x pp 2 = 4 GPUs, max_batch_size unset (2048) > n 64:
    #   weights  2,740,224 x 0.5 B               = 1,370,112 B = 0.001370112 GB
    #   KV cache 512 x 128 x 64 seqs x 2 B       = 8,388,608 B = 0.008388608 GB
    #   overhead 1 + 0.1 x 0.001370112           = 1.0001370112 GB
    #   per GPU  (0.001370112 + 0.008388608 + 1.0001370112) / 4 = 0.2524739328 GB
    run = config(backend="tensorrt", precision="fp16",
                 tensorrt={"quantization": "int4_awq", "tp_size": 2, "pp_size": 2})
    vram = estimate_vram(run, SHAPE)
    assert vram.weights_gb == pytest.approx(0.001370112)
    assert vram.kv_cache_gb == pytest.approx(0.008388608)
    assert vram.parallel == 4
    assert vram.per_gpu_gb == pytest.approx(0.2524739328)


def test_pytorch_fp32_static_batch_on_one_device() -> None:
    # fp32, batch_size 4:
    #   weights  2,740,224 x 4 B            = 0.010960896 GB
    #   KV cache 512 x 128 x 4 seqs x 4 B   = 1,048,576 B = 0.001048576 GB
    #   overhead 1 + 0.0010960896           = 1.0010960896 GB
    #   total    1.0131055616 GB on one device
    run = config(backend="pytorch", precision="fp32", pytorch={"batch_size": 4})
    assert estimate_vram(run, SHAPE).per_gpu_gb == pytest.approx(1.0131055616)


def test_pytorch_4bit_weights_take_half_a_byte_per_parameter() -> None:
    # 2,740,224 x 0.5 B = 0.001370112 GB
    run = config(backend="pytorch", precision="fp16", pytorch={"load_in_4bit": True})
    assert estimate_vram(run, SHAPE).weights_gb == pytest.approx(0.001370112)


def test_duration_of_one_run_on_a_gpu() -> None:
    # work:   2 x 2,740,224 x 8,192 tokens / 100e12 FLOP/s = 0.00044895830016 s
    # warmup: 5 batches x work x batch 4 / n 64 = 0.0001402994688 s (min_seconds 0)
    # load:   2,740,224 x 2 / 2e9               = 0.002740224 s
    # total:  10 s start-up + load + warmup + work = 10.00332948176896 s
    run = config(backend="pytorch", precision="bf16", pytorch={"batch_size": 4})
    assert estimate_run_s(run, SHAPE, on_gpu=True) == pytest.approx(10.00332948176896)


def test_duration_on_cpu_keeps_the_warmup_floor() -> None:
    # work at 20e9 FLOP/s: 44,895,830,016 / 20e9 = 2.2447915008 s
    # warmup: max(60 s floor, 5 x 2.2447915008 x 4 / 64 = 0.70149734400 s) = 60 s
    # total:  10 + 0.002740224 + 60 + 2.2447915008 = 72.2475317248 s
    run = config(backend="pytorch", precision="bf16", pytorch={"batch_size": 4},
                 warmup={"n_warmup": 5, "min_seconds": 60})
    assert estimate_run_s(run, SHAPE, on_gpu=False) == pytest.approx(72.2475317248)


@pytest.fixture
def gqa_model(tmp_path: Path) -> Path:
    model = tmp_path / "gqa-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(GQA_CONFIG))
    return model


# gaps (config_gap_s 7, cycle_gap_s 30):
#   interleaved and shuffled A1 B1 | A2 B2 (or B1 A1 | ...): config 7, cycle 30, config 7 = 44 s
#   sequential A1 A2 B1 B2: cycles side by side, no pause separates two cycles: 3 x 7 = 21 s
GAPS_S = {"interleaved": 44.0, "shuffled": 44.0, "sequential": 21.0}


@pytest.mark.parametrize("order", sorted(GAPS_S))
def test_the_study_duration_adds_each_gap_the_executor_waits(gqa_model: Path, tmp_path: Path,
                                                              order: str) -> None:
    # 2 configurations (max_num_seqs 16 and 32) x 2 cycles. No GPU here: vLLM runs on CPU (the
    # vllm-cpu image), at 20 GFLOP/s. Per run (work 44,895,830,016 / 20e9 = 2.2447915008 s,
    # load 0.002740224 s):
    #   max_num_seqs 16: warmup 5 x work x 16/64 = 2.805989376 s
    #                    run = 10 + load + warmup + work = 15.0535211008 s
    #   max_num_seqs 32: warmup 5 x work x 32/64 = 5.611978752 s
    #                    run = 17.8595104768 s
    # runs: 2 x (15.0535211008 + 17.8595104768) = 65.8260631552 s
    # total 65.8260631552 s + the gaps of the order
    study = tmp_path / "gaps.yaml"
    study.write_text(
        f"model: {gqa_model}\nbackend: vllm\nprecision: bf16\nn: 64\ninput_len: 100\n"
        "output_len: 28\nwarmup:\n  n_warmup: 5\n  min_seconds: 0\n"
        f"execution:\n  n_cycles: 2\n  cycle_order: {order}\n  config_gap_s: 7\n"
        "  cycle_gap_s: 30\nsweep:\n  vllm.max_num_seqs: [16, 32]\n")
    result = CliRunner().invoke(main, ["run", str(study), "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["estimated_duration_s"] == pytest.approx(65.8260631552 + GAPS_S[order])
    # --no-gaps waits none, and the estimate counts none
    result = CliRunner().invoke(main, ["run", str(study), "--dry-run", "--json", "--no-gaps"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["estimated_duration_s"] == pytest.approx(65.8260631552)


def test_find_config_reads_a_relative_local_directory(gqa_model: Path) -> None:
    assert find_config(gqa_model.name, cwd=gqa_model.parent) == GQA_CONFIG


def test_a_serving_run_lasts_its_arrivals_or_the_drain_of_what_it_cannot_keep_up_with() -> None:
    def serving(rate: float) -> ExperimentConfig:
        return ExperimentConfig(model="m", backend="vllm", input_len=100, output_len=100,
                                warmup={"n_warmup": 0, "min_seconds": 0},
                                load={"mode": "serving", "request_rate": rate,
                                      "duration_s": 60})

    fixed_s = 10.0 + SHAPE.parameters * 2 / 2e9  # start-up and load
    # a few requests: the arrivals' 60 s dominate
    assert estimate_run_s(serving(0.01), SHAPE, on_gpu=True) == pytest.approx(fixed_s + 60)
    # 100 req/s x 60 s of 200 tokens on CPU: the engine's work outlasts the arrivals
    work_s = 2 * SHAPE.parameters * 6000 * 200 / 20e9
    assert work_s > 60
    assert estimate_run_s(serving(100.0), SHAPE, on_gpu=False) == pytest.approx(
        fixed_s + work_s)
