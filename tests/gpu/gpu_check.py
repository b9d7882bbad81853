"""GPU check (`make gpu-check`): a short study on a real NVIDIA GPU, local runner, ~1B-parameter
random-weight model built from a config (no download). Prints energy, counter-vs-integration
agreement, baseline, warmup stability, harness overhead against a bare generate loop, and
the same run measured through each installed energy source (NVML, Zeus, CodeCarbon).

    .venv/bin/python tests/gpu/gpu_check.py [WORK_DIR]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness import run_experiment
from harness.energy import discover_gpus
from harness.schema import ExperimentConfig
from harness.tiny_model import build_tiny_model
from orchestrator import run_study

# TinyLlama-like shape: ~1.1 B non-embedding parameters.
SHAPE = {"layers": 18, "hidden_size": 2048, "heads": 16, "kv_heads": 4, "vocab_size": 512}
WORKLOAD = {"n": 64, "input_len": 256, "output_len": 128}

STUDY = """\
name: gpu-check
model: {model}
backend: pytorch
precision: bf16
n: {n}
input_len: {input_len}
output_len: {output_len}
warmup: {{n_warmup: 3, min_seconds: 30, until_stable: true, max_seconds: 120}}
baseline: {{duration_s: 10}}
execution: {{n_cycles: 1, config_gap_s: 5, cycle_gap_s: 0, timeout_s: 1800}}
sweep:
  pytorch.batch_size: [8, 32]
"""


def bare_tokens_per_s(model_dir: Path, batch_size: int) -> float:
    """Plain transformers generate on CUDA, same shapes, no measurement."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).to("cuda")
    ids = torch.randint(4, SHAPE["vocab_size"], (batch_size, WORKLOAD["input_len"]),
                        device="cuda")
    kwargs = {"max_new_tokens": WORKLOAD["output_len"], "min_new_tokens": WORKLOAD["output_len"],
              "do_sample": False, "pad_token_id": 0, "attention_mask": torch.ones_like(ids)}
    with torch.inference_mode():
        model.generate(ids, **kwargs)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(WORKLOAD["n"] // batch_size):
            model.generate(ids, **kwargs)
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    del model
    torch.cuda.empty_cache()
    return WORKLOAD["n"] * WORKLOAD["output_len"] / elapsed


def harness_tokens_per_s(model_dir: Path, batch_size: int, work: Path) -> float:
    """The full harness in-process on the same shapes."""
    config = ExperimentConfig(model=str(model_dir), backend="pytorch", precision="bf16",
                              **WORKLOAD, warmup={"n_warmup": 1, "min_seconds": 0},
                              baseline={"enabled": False}, pytorch={"batch_size": batch_size})
    result = run_experiment(config, work / f"overhead-{time.monotonic_ns()}")
    return result.throughput.output_tokens_per_s


def source_comparison(model_dir: Path, work: Path) -> None:
    """One run per installed energy source, same workload: J/token side by side with NVML's."""
    import importlib.util

    sources = ["nvml"] + [name for name in ("zeus", "codecarbon")
                          if importlib.util.find_spec(name) is not None]
    per_token: dict[str, float] = {}
    for source in sources:
        config = ExperimentConfig(model=str(model_dir), backend="pytorch", precision="bf16",
                                  **WORKLOAD, warmup={"n_warmup": 2, "min_seconds": 10},
                                  baseline={"enabled": False}, energy={"backend": source},
                                  pytorch={"batch_size": 32})
        result = run_experiment(config, work / f"source-{source}-{time.monotonic_ns()}")
        energy = result.energy
        if energy.energy_per_output_token_j is None:
            print(f"- source {source}: no energy ({', '.join(result.warning_codes())})")
            continue
        per_token[source] = energy.energy_per_output_token_j
        print(f"- source {source}: {energy.energy_j:.1f} J ({energy.energy_method}), "
              f"{energy.energy_per_output_token_j:.4f} J/token, ratio to nvml "
              f"{energy.energy_per_output_token_j / per_token.get('nvml', float('nan')):.3f}")
    missing = {"zeus", "codecarbon"} - set(sources)
    if missing:
        print(f"- not installed, not compared: {', '.join(sorted(missing))} "
              "(pip install 'llem[zeus,codecarbon]')")


def main() -> None:
    """Run the check and print its figures."""
    gpus = discover_gpus()
    if len(gpus) == 0:
        sys.exit("gpu-check: no NVIDIA GPU visible to NVML; nothing to check")
    print("GPUs:", ", ".join(f"{g.info().name} ({g.info().uuid})" for g in gpus))
    gpus.close()
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="llem-gpu-"))
    model_dir = work / "model-1b"
    if not (model_dir / "config.json").exists():
        build_tiny_model(model_dir, **SHAPE)
    study = work / "gpu-check.yaml"
    study.write_text(STUDY.format(model=model_dir, **WORKLOAD))
    summary, study_dir = run_study(study, "local", output=work / "results")
    print(f"study: {study_dir} ({summary.counts})")
    from orchestrator.manifest import Manifest
    from orchestrator.tables import load_results

    for result in load_results(study_dir, Manifest.load(study_dir)):
        energy = result.energy
        baseline = result.baseline
        idle = f"{baseline.power_w} W ({baseline.provenance})" if baseline else "none"
        agreement = (100 * (energy.energy_integrated_j - energy.energy_j) / energy.energy_j
                     if energy.energy_j and energy.energy_integrated_j else float("nan"))
        print(f"- {result.run_id}: energy {energy.energy_j:.1f} J ({energy.energy_method}), "
              f"integrated {energy.energy_integrated_j:.1f} J ({agreement:+.2f} %), "
              f"{energy.energy_per_output_token_j:.4f} J/token, "
              f"{result.throughput.output_tokens_per_s:.0f} tokens/s, mean "
              f"{energy.mean_power_w:.0f} W; baseline {idle}; warmup "
              f"{result.warmup.duration_s:.0f} s, stable={result.warmup.stable}; warnings: "
              f"{', '.join(result.warning_codes()) or 'none'}; sanity passed: "
              f"{result.sanity.passed if result.sanity else None}")
    source_comparison(model_dir, work)
    for batch_size in (8, 32):
        bare = [bare_tokens_per_s(model_dir, batch_size) for _ in range(3)]
        full = [harness_tokens_per_s(model_dir, batch_size, work) for _ in range(3)]
        print(f"- overhead at batch {batch_size}: harness {statistics.median(full):.0f} vs bare "
              f"{statistics.median(bare):.0f} tokens/s, ratio "
              f"{statistics.median(full) / statistics.median(bare):.3f} (goal >= 0.99)")


if __name__ == "__main__":
    main()
