"""``SamplingParams`` as in tensorrt_llm/sampling_params.py (1.0: kw_only dataclass).

The greedy rule follows the release (:func:`tensorrt_llm._release.greedy_implied_by_any_field`):
1.0's (1.0.0rc4 source) before the removal, the newer ``params_imply_greedy_decoding`` after.
"""

from dataclasses import dataclass

from tensorrt_llm import _release


@dataclass(kw_only=True)
class SamplingParams:
    end_id: int | None = None
    pad_id: int | None = None
    max_tokens: int = 32
    bad: str | list[str] | None = None
    bad_token_ids: list[int] | None = None
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    include_stop_str_in_output: bool = False
    n: int = 1
    best_of: int | None = None
    use_beam_search: bool = False
    top_k: int | None = None
    top_p: float | None = None
    top_p_min: float | None = None
    top_p_reset_ids: int | None = None
    top_p_decay: float | None = None
    seed: int | None = None
    temperature: float | None = None
    min_tokens: int | None = None
    beam_search_diversity_rate: float | None = None
    repetition_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    length_penalty: float | None = None
    early_stopping: int | None = None
    no_repeat_ngram_size: int | None = None
    min_p: float | None = None
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    return_context_logits: bool = False
    return_generation_logits: bool = False
    exclude_input_from_output: bool = True
    ignore_eos: bool = False
    detokenize: bool = True
    add_special_tokens: bool = True
    truncate_prompt_tokens: int | None = None
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True

    def __post_init__(self) -> None:
        if self.pad_id is None:
            self.pad_id = self.end_id
        self.best_of = self.best_of or self.n
        if self.best_of < self.n:
            raise ValueError(f"best_of ({self.best_of}) cannot be less than n ({self.n})")
        if self.best_of > 1 and self._greedy_decoding:
            raise ValueError("Greedy decoding in the LLM API does not allow multiple returns. "
                             f"Please set to best_of=1, got best_of={self.best_of}.")

    @staticmethod
    def params_imply_greedy_decoding(*, temperature: float | None, top_p: float | None,
                                     top_k: int | None) -> bool:
        return ((temperature is None and top_p is None and top_k is None)
                or top_k == 1 or top_p == 0.0 or temperature == 0)

    @property
    def _greedy_decoding(self) -> bool:
        if _release.greedy_implied_by_any_field():
            return not self.use_beam_search and self.params_imply_greedy_decoding(
                temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        return (not self.use_beam_search
                and (self.top_k is None or self.top_k == 1)
                and (self.top_p is None or self.top_p == 0.0))

    @property
    def beam_width(self) -> int:
        return self.best_of if self.use_beam_search else 1
