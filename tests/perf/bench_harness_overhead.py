"""Benchmark: harness overhead, output tokens/s with full measurement vs a bare generate loop.

Same process, same model, same workload; the two are interleaved (bare, harness, bare, ...)
and the medians compared, so machine noise hits both alike. Goal: ratio >= 0.99.

    .venv/bin/python tests/perf/bench_harness_overhead.py [MODEL_DIR]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from harness import run_experiment
from harness.schema import ExperimentConfig

N, INPUT_LEN, OUTPUT_LEN, BATCH, ROUNDS = 32, 64, 64, 8, 3


def bare_tokens_per_s(model_dir: Path) -> float:
    """A plain transformers generate loop over the same batches (no measurement at all)."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    generator = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    batches = [torch.randint(4, vocab, (BATCH, INPUT_LEN), generator=generator)
               for _ in range(N // BATCH)]
    with torch.inference_mode():
        model.generate(batches[0], max_new_tokens=OUTPUT_LEN, min_new_tokens=OUTPUT_LEN,
                       do_sample=False, pad_token_id=0)  # warm, like the harness's warmup
        start = time.perf_counter()
        for batch in batches:
            model.generate(batch, attention_mask=torch.ones_like(batch),
                           max_new_tokens=OUTPUT_LEN, min_new_tokens=OUTPUT_LEN,
                           do_sample=False, pad_token_id=0)
        elapsed = time.perf_counter() - start
    return N * OUTPUT_LEN / elapsed


def harness_tokens_per_s(model_dir: Path) -> float:
    """The full harness in-process: preflight, sampler, load, warmup, measure, write."""
    config = ExperimentConfig(
        model=str(model_dir), backend="pytorch", precision="fp32", n=N, input_len=INPUT_LEN,
        output_len=OUTPUT_LEN, warmup={"n_warmup": 1, "min_seconds": 0},
        pytorch={"batch_size": BATCH},
    )
    with tempfile.TemporaryDirectory() as tmp:
        result = run_experiment(config, Path(tmp) / "run")
    return result.throughput.output_tokens_per_s


def main() -> None:
    """Print both throughputs and their ratio."""
    model_dir = Path(sys.argv[1] if len(sys.argv) > 1 else ".llem/models/tiny-llama")
    torch.set_num_threads(torch.get_num_threads())
    bare, full = [], []
    for _ in range(ROUNDS):
        bare.append(bare_tokens_per_s(model_dir))
        full.append(harness_tokens_per_s(model_dir))
    bare_median, full_median = statistics.median(bare), statistics.median(full)
    print(f"bare generate loop: {bare_median:.1f} output tokens/s  (runs: "
          f"{', '.join(f'{v:.0f}' for v in bare)})")
    print(f"llem harness:       {full_median:.1f} output tokens/s  (runs: "
          f"{', '.join(f'{v:.0f}' for v in full)})")
    print(f"ratio harness/bare: {full_median / bare_median:.3f}  (goal >= 0.99)")


if __name__ == "__main__":
    main()
