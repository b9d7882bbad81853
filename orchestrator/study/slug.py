"""Short, filesystem-safe descriptions of what varies between experiments (``pytorch-bf16-bs8``)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from harness.paths import transliterate

MAX_SLUG_LEN = 64

# Values that describe themselves: 'bf16', 'sdpa', 'greedy' need no key in front.
_VALUE_ONLY = frozenset(
    {"backend", "precision", "mode", "attn_implementation", "kv_cache_dtype", "quantization",
     "dataset", "model", "revision", "device_map", "adapter", "engine_dir"}
)
_SHORT = {
    "batch_size": "bs", "max_batch_size": "bs", "max_num_seqs": "seqs",
    "max_num_batched_tokens": "tok", "max_num_tokens": "tok", "tensor_parallel_size": "tp",
    "tp_size": "tp", "pp_size": "pp", "gpu_memory_utilization": "mem",
    "kv_cache_free_gpu_memory_fraction": "kvmem", "enable_prefix_caching": "prefix",
    "enable_block_reuse": "reuse",
    "enable_chunked_prefill": "chunked", "enforce_eager": "eager", "torch_compile": "compile",
    "load_in_8bit": "8bit", "load_in_4bit": "4bit", "block_size": "blk",
    "max_input_len": "maxin", "max_seq_len": "maxseq",
    "input_len": "in", "output_len": "out", "n_warmup": "wu", "num_beams": "beams",
    "temperature": "temp", "top_p": "topp", "top_k": "topk", "random_seed": "seed",
    "sample_interval_ms": "ms", "streaming": "stream",
}
_UNSAFE = re.compile(r"[^A-Za-z0-9._]+")


def token(path: Sequence[str | int], value: Any) -> str:
    """One slug part for the setting ``path = value`` (``('pytorch', 'batch_size'), 8 -> bs8``)."""
    if isinstance(value, dict):
        return "-".join(token((*path, key), item) for key, item in value.items())
    key = str(path[-1]) if path else ""
    short = _SHORT.get(key, key)
    if key in _VALUE_ONLY and isinstance(value, str):
        text = value.rstrip("/").rsplit("/", 1)[-1]  # a model id or path: its last part
    elif isinstance(value, bool):
        text = short if value else f"no{short}"
    elif value is None:
        text = f"{short}default"
    elif isinstance(value, list):
        text = short + "_".join(str(item) for item in value)
    else:
        text = f"{short}{value}"
    return _UNSAFE.sub("_", transliterate(text)).strip("._") or "x"


def tokens_of(values: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[str]:
    """Slug parts for every setting in a nested mapping, in the order written."""
    parts: list[str] = []
    for key, value in values.items():
        if isinstance(value, dict) and value:
            parts.extend(tokens_of(value, (*prefix, key)))
        else:
            parts.append(token((*prefix, key), value))
    return parts


def slug(parts: Iterable[str]) -> str:
    """Join slug parts with '-' and keep the result short and safe as a directory name."""
    text = "-".join(part for part in parts if part)[:MAX_SLUG_LEN]
    return text.strip("-._") or "experiment"
