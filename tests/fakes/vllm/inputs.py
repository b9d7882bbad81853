"""``vllm.inputs``: the prompt types llem uses (vllm/inputs/data.py)."""

from __future__ import annotations

from typing import TypedDict


class TokensPrompt(TypedDict):
    """A prompt given as token ids (vLLM does not tokenise it)."""

    prompt_token_ids: list[int]
