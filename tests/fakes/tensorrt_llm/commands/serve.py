"""``trtllm-serve`` (tensorrt_llm/commands/serve.py and tensorrt_llm/serve/) without a GPU.

What llem relies on, as the published source behaves (1.2-era serve.py, index commit 00209af,
unless a line says otherwise):

- the command: a click group whose unknown first argument means ``serve``; ``serve MODEL``
  with the option names and defaults of the real one; an unknown option is a usage error
  (exit 2). ``--backend`` defaults to ``pytorch``: the PyTorch runtime (``tensorrt_llm.LLM``)
  serving a Hugging Face checkpoint directory; ``tensorrt`` loads
  ``tensorrt_llm._tensorrt_engine.LLM``. After the removal (fake layout 1.4.0rc1) its choices
  are narrowed to ``pytorch``, so ``tensorrt`` is a usage error (the post-removal serve.py was
  not read: the migration guide says "Omit, or pass ``--backend pytorch``", and
  ``trtllm-eval --backend`` became ``click.Choice(["pytorch"])``);
- the LLM arguments as ``get_llm_args`` makes them: a ``BuildConfig`` (while the release has
  one) and the top-level ``max_batch_size``, ``max_num_tokens``, ``max_beam_width``,
  ``max_seq_len`` from the four limit options (their defaults when not given: ``BuildConfig``'s
  before the removal, ``TorchLlmArgs``' after it, unverified), ``KvCacheConfig(
  free_gpu_memory_fraction=...)`` from ``--kv_cache_free_gpu_memory_fraction`` (0.9), a
  ``SchedulerConfig`` of its own (``GUARANTEED_NO_EVICT`` with dynamic batch-size tuning), then
  the ``--extra_llm_api_options`` YAML (or JSON) on top, a nested ``kv_cache_config``,
  ``scheduler_config`` or ``cuda_graph_config`` mapping replacing the whole object (a null
  ``cuda_graph_config`` turns CUDA graphs off). The file wins over the flags; after the removal
  the limit and parallelism flags given on the command line win over the file, with a warning
  (post-removal ``update_llm_args_with_extra_dict(..., explicit_cli_keys)``; the fake does not
  model its mapping of ``--kv_cache_free_gpu_memory_fraction`` onto a file's
  ``kv_cache_config``). For ``pytorch``,
  ``launch_server`` pops ``build_config`` before ``LLM(**llm_args)``. The fake LLMs check the
  result as the library does (unknown arguments, run-time limits above an engine's built ones);
- the routes: nothing listens until the LLM is loaded; ``GET /health`` 200; ``GET /v1/models``
  lists the served model under the MODEL argument's last path component;
  ``POST /v1/completions`` validates the body as ``CompletionRequest`` (extra fields forbidden:
  400 with an error object), takes token-id prompts, and streams server-sent events: one
  ``text_completion`` chunk per engine update (``text`` the new text and ``token_ids`` None, or,
  with ``detokenize: false``, ``text`` empty and ``token_ids`` the new ids), then, when
  ``stream_options.include_usage`` (True once ``stream_options`` is given), a chunk with no
  choices and the ``usage``, then ``[DONE]``.
  1.0's usage carries no ``prompt_tokens_details``.

Once loaded, the fake logs the settings the LLM runs with (``engine loaded: {json}``) for tests.
Run as ``python -m tensorrt_llm.commands.serve`` with ``tests/fakes`` first on the path.
"""

import asyncio
import json
import logging
import signal
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
import yaml
from click.core import ParameterSource
from pydantic import BaseModel, ConfigDict, ValidationError
from tensorrt_llm import _release
from tensorrt_llm.llmapi.llm_args import (
    TORCH_LIMIT_DEFAULTS,
    CudaGraphConfig,
    DynamicBatchConfig,
    KvCacheConfig,
    SchedulerConfig,
)
from tensorrt_llm.sampling_params import SamplingParams

if _release.has_engine_runtime():
    from tensorrt_llm.builder import BuildConfig
else:  # the removal deleted builder.py
    BuildConfig = None

_LIMITS = ("max_beam_width", "max_batch_size", "max_num_tokens", "max_seq_len")
_CLI_LLM_ARGS = (*_LIMITS, "tensor_parallel_size", "pipeline_parallel_size")
"""Options whose value ``get_llm_args`` passes under the same name."""
_LOGGER = logging.getLogger("tensorrt_llm")


def _limit_defaults() -> dict[str, Any]:
    """The limit options' defaults: ``BuildConfig.model_fields[...].default`` while the release
    has ``BuildConfig``; after the removal ``TorchLlmArgs``' (serve.py not read: unverified)."""
    defaults = TORCH_LIMIT_DEFAULTS if BuildConfig is None else vars(BuildConfig())
    return {name: defaults[name] for name in _LIMITS}


_DEFAULTS = _limit_defaults()
_BACKENDS = (["pytorch", "tensorrt", "_autodeploy"] if _release.has_engine_runtime()
             else ["pytorch"])


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool | None = True
    continuous_usage_stats: bool | None = False


class CompletionRequest(BaseModel):
    """tensorrt_llm/serve/openai_protocol.py (1.0): the fields up to the extra params."""

    model_config = ConfigDict(extra="forbid")
    model: str
    prompt: list[int] | list[list[int]] | str | list[str]
    best_of: int | None = None
    echo: bool | None = False
    frequency_penalty: float | None = 0.0
    logit_bias: dict[str, float] | None = None
    logprobs: int | None = None
    max_tokens: int | None = None
    n: int = 1
    presence_penalty: float | None = 0.0
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    suffix: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    user: str | None = None
    use_beam_search: bool = False
    top_k: int = 0
    top_p_min: float = 0.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    length_penalty: float = 1.0
    early_stopping: bool = False
    stop_token_ids: list[int] | None = None
    include_stop_str_in_output: bool = False
    ignore_eos: bool = False
    min_tokens: int = 0
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    truncate_prompt_tokens: int | None = None
    return_context_logits: bool = False
    detokenize: bool = True
    add_special_tokens: bool = True

    def to_sampling_params(self) -> SamplingParams:
        return SamplingParams(
            best_of=self.best_of, max_tokens=self.max_tokens or 16, n=self.n, seed=self.seed,
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            use_beam_search=self.use_beam_search, top_k=self.top_k, min_p=self.min_p,
            ignore_eos=self.ignore_eos, min_tokens=self.min_tokens,
            detokenize=self.detokenize, add_special_tokens=self.add_special_tokens)


def get_llm_args(model: str, tokenizer: str | None, max_beam_width: int, max_batch_size: int,
                 max_num_tokens: int, max_seq_len: int | None, tensor_parallel_size: int,
                 pipeline_parallel_size: int, free_gpu_memory_fraction: float) -> dict[str, Any]:
    scheduler_config = SchedulerConfig(
        capacity_scheduler_policy="GUARANTEED_NO_EVICT",
        dynamic_batch_config=DynamicBatchConfig(enable_batch_size_tuning=True,
                                                enable_max_num_tokens_tuning=False,
                                                dynamic_batch_moving_average_window=128))
    llm_args = {
        "model": model, "scheduler_config": scheduler_config, "tokenizer": tokenizer,
        "tensor_parallel_size": tensor_parallel_size,
        "pipeline_parallel_size": pipeline_parallel_size,
        "max_batch_size": max_batch_size, "max_num_tokens": max_num_tokens,
        "max_beam_width": max_beam_width, "max_seq_len": max_seq_len,
        "kv_cache_config": KvCacheConfig(free_gpu_memory_fraction=free_gpu_memory_fraction),
    }
    if BuildConfig is not None:
        llm_args["build_config"] = BuildConfig(
            max_batch_size=max_batch_size, max_num_tokens=max_num_tokens,
            max_beam_width=max_beam_width, max_seq_len=max_seq_len)
    return llm_args


def update_llm_args_with_extra_dict(llm_args: dict[str, Any], extra: dict[str, Any],
                                    explicit_cli_keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """tensorrt_llm/llmapi/llm_utils.py: nested config mappings become their classes; the keys
    given on the command line (after the removal only) keep the flags' values."""
    classes = {"kv_cache_config": KvCacheConfig, "scheduler_config": SchedulerConfig,
               "cuda_graph_config": CudaGraphConfig, "build_config": BuildConfig}
    converted = {key: classes[key](**value) if classes.get(key) and isinstance(value, dict)
                 else value for key, value in extra.items()}
    for key in explicit_cli_keys:
        if key in converted:
            _LOGGER.warning("%s from the command line overrides the value in the options file",
                            key)
            del converted[key]
    return {**llm_args, **converted}


class _Server:
    def __init__(self, llm: Any, model: str) -> None:
        self.llm = llm
        self.model = model

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode("latin-1").strip()
            if not request_line:
                return
            method, path, _ = request_line.split(" ", 2)
            headers: dict[str, str] = {}
            while (line := (await reader.readline()).decode("latin-1").strip()):
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            await self.route(method, path, body, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def route(self, method: str, path: str, body: bytes,
                    writer: asyncio.StreamWriter) -> None:
        if method == "GET" and path == "/health":
            await _respond(writer, 200, b"")
        elif method == "GET" and path == "/v1/models":
            listing = {"object": "list", "data": [{"id": Path(self.model).name, "object": "model",
                                                   "owned_by": "tensorrt_llm"}]}
            await _respond(writer, 200, json.dumps(listing).encode())
        elif method == "POST" and path == "/v1/completions":
            await self.completions(body, writer)
        else:
            await _respond(writer, 404, json.dumps({"detail": "Not Found"}).encode())

    async def completions(self, body: bytes, writer: asyncio.StreamWriter) -> None:
        try:
            request = CompletionRequest.model_validate_json(body)
        except ValidationError as error:
            await _error(writer, 400, str(error))
            return
        if not isinstance(request.prompt, list) or not all(isinstance(t, int)
                                                           for t in request.prompt):
            await _error(writer, 400, "this fake serves token-id prompts only")
            return
        if not request.stream:
            await _error(writer, 400, "this fake streams only")
            return
        try:
            stream = self.llm.generate_async(request.prompt,
                                             sampling_params=request.to_sampling_params(),
                                             streaming=True)
        except (ValueError, TypeError, RuntimeError) as error:
            await _error(writer, 400, str(error))
            return
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                     b"connection: close\r\n\r\n")
        include_usage = (request.stream_options is not None
                         and bool(request.stream_options.include_usage))
        continuous = include_usage and bool(request.stream_options.continuous_usage_stats)
        cid = f"cmpl-{uuid.uuid4().hex}"
        final = None
        async for partial in stream:
            output = partial.outputs[0]
            diff = list(output.token_ids_diff)
            choice = {"index": 0,
                      "text": "" if not request.detokenize else " ".join(map(str, diff)),
                      "token_ids": None if request.detokenize else diff,
                      "logprobs": None, "finish_reason": output.finish_reason,
                      "stop_reason": None}
            usage = None
            if continuous:  # usage on every chunk, counting what was generated so far
                usage = {"prompt_tokens": len(request.prompt),
                         "completion_tokens": len(output.token_ids),
                         "total_tokens": len(request.prompt) + len(output.token_ids)}
            await _event(writer, {"id": cid, "object": "text_completion",
                                  "created": int(time.time()), "model": request.model,
                                  "choices": [choice], "usage": usage})
            final = partial
        if include_usage and final is not None:
            completion = len(final.outputs[0].token_ids)
            usage = {"prompt_tokens": len(request.prompt), "completion_tokens": completion,
                     "total_tokens": len(request.prompt) + completion}
            await _event(writer, {"id": cid, "object": "text_completion",
                                  "created": int(time.time()), "model": request.model,
                                  "choices": [], "usage": usage})
        writer.write(b"data: [DONE]\n\n")
        await writer.drain()


async def _event(writer: asyncio.StreamWriter, data: dict[str, Any]) -> None:
    writer.write(f"data: {json.dumps(data)}\n\n".encode())
    await writer.drain()


async def _respond(writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
    writer.write(f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
                 f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body)
    await writer.drain()


async def _error(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    error = {"object": "error", "message": message, "type": "BadRequestError", "param": None,
             "code": status}
    await _respond(writer, status, json.dumps(error).encode())


async def _serve(llm: Any, model: str, host: str, port: int) -> None:
    server = _Server(llm, model)
    listening = await asyncio.start_server(server.handle, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"INFO: Uvicorn running on http://{host}:{port}", flush=True)
    async with listening:
        await stop.wait()


@click.command("serve")
@click.argument("model", type=str)
@click.option("--tokenizer", type=str, default=None)
@click.option("--host", type=str, default="localhost")
@click.option("--port", type=int, default=8000)
@click.option("--backend", type=click.Choice(_BACKENDS), default="pytorch")
@click.option("--log_level", type=click.Choice(["verbose", "info", "warning", "error"]),
              default="info")
@click.option("--max_beam_width", type=int, default=_DEFAULTS["max_beam_width"])
@click.option("--max_batch_size", type=int, default=_DEFAULTS["max_batch_size"])
@click.option("--max_num_tokens", type=int, default=_DEFAULTS["max_num_tokens"])
@click.option("--max_seq_len", type=int, default=_DEFAULTS["max_seq_len"])
@click.option("--tensor_parallel_size", "--tp_size", type=int, default=1)
@click.option("--pipeline_parallel_size", "--pp_size", type=int, default=1)
@click.option("--free_gpu_memory_fraction", "--kv_cache_free_gpu_memory_fraction", type=float,
              default=0.9)
@click.option("--trust_remote_code", is_flag=True, default=False)
@click.option("--config", "--extra_llm_api_options", "extra_llm_api_options", type=str,
              default=None)
def serve(model: str, tokenizer: str | None, host: str, port: int, backend: str,
          log_level: str, max_beam_width: int, max_batch_size: int, max_num_tokens: int,
          max_seq_len: int | None, tensor_parallel_size: int, pipeline_parallel_size: int,
          free_gpu_memory_fraction: float, trust_remote_code: bool,
          extra_llm_api_options: str | None) -> None:
    """Running an OpenAI API compatible server."""
    llm_args = get_llm_args(model, tokenizer, max_beam_width, max_batch_size, max_num_tokens,
                            max_seq_len, tensor_parallel_size, pipeline_parallel_size,
                            free_gpu_memory_fraction)
    extra: dict[str, Any] = {}
    if extra_llm_api_options is not None:
        with open(extra_llm_api_options) as options:
            extra = yaml.safe_load(options) or {}
    llm_args = update_llm_args_with_extra_dict(llm_args, extra, _explicit_cli_keys())
    if backend == "tensorrt":
        from tensorrt_llm._tensorrt_engine import LLM
    else:
        from tensorrt_llm import LLM

        llm_args.pop("build_config", None)
    llm = LLM(**llm_args)
    loaded = {**_loaded(llm), "run_time_max_batch_size": llm_args["max_batch_size"],
              "scheduler_config": asdict(llm_args["scheduler_config"])}
    print(f"[TensorRT-LLM][INFO] engine loaded: {json.dumps(loaded)}", flush=True)
    try:
        asyncio.run(_serve(llm, model, host, port))
    finally:
        llm.shutdown()


def _explicit_cli_keys() -> tuple[str, ...]:
    """The LLM arguments given as flags, which win over the options file after the removal."""
    if _release.has_engine_runtime():
        return ()
    context = click.get_current_context()
    return tuple(name for name in _CLI_LLM_ARGS
                 if context.get_parameter_source(name) is ParameterSource.COMMANDLINE)


def _loaded(llm: Any) -> dict[str, Any]:
    """What the fake loaded, in its log (tests read the settings the LLM runs with)."""
    args = llm.args
    kv = args.kv_cache_config
    cache = {"kv_cache_config": {"enable_block_reuse": kv.enable_block_reuse,
                                 "free_gpu_memory_fraction": kv.free_gpu_memory_fraction}}
    if getattr(args, "backend", None) != "pytorch":
        return {"max_batch_size": args.build_config.max_batch_size,
                "max_beam_width": args.max_beam_width, **cache}
    graphs = args.cuda_graph_config
    return {"backend": "pytorch", **{name: getattr(args, name) for name in (
        "max_batch_size", "max_num_tokens", "max_seq_len", "max_beam_width", "attn_backend",
        "disable_overlap_scheduler")}, **cache,
        "cuda_graph_config": None if graphs is None else asdict(graphs)}


class DefaultGroup(click.Group):
    """An unknown first argument means ``serve`` (``trtllm-serve MODEL ...``)."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        if args and args[0] not in self.commands:
            return "serve", self.commands["serve"], args
        return super().resolve_command(ctx, args)


main = DefaultGroup(commands={"serve": serve})

if __name__ == "__main__":
    main()
