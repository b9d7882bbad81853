"""An engine's own OpenAI-compatible server, started by the harness on loopback.

This is ``load.client: openai_server``, the way engines are deployed: the engine in its own
server process (vLLM's ``vllm.entrypoints.openai.api_server``, TensorRT-LLM's
``trtllm-serve``), listening on 127.0.0.1 only (a container keeps no outside network), and the
harness as its client. Each request is one streamed ``/v1/completions`` call with a token-id
prompt through the ``openai`` client, asking for exactly ``max_tokens`` tokens and for the
token ids of every chunk, so counts are the engine's, not re-tokenised text.

What differs between engines (the command, the request's extension fields, what the server
reports about itself) lives with each backend; the process's life, the client and the stream
live here. Nothing here imports an engine library; ``openai`` and ``httpx`` are imported when a
client starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
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
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.backends.base import PhaseMark, Request, RequestOutput, StreamChunk, StreamFn
from harness.children import signalled_with_parent
from harness.errors import BackendError

SERVED_NAME = "llem"
"""The model name the server answers to, where the server takes one."""

LOG_TAIL_LINES = 30
"""Lines of the server's log in a failed start's message."""

KEPT_LOG_LINES = 200
"""Lines of the server's log copied to the run's log when the server stops."""


def free_port() -> int:
    """A loopback TCP port free now (the server binds it moments later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LoopbackServer:
    """One server process: started, waited for, read, stopped.

    Args:
        label: how messages name it ("vLLM's OpenAI server", "trtllm-serve").
        command: the command line.
        port: the loopback port it listens on.
        environment: added to the harness's environment for the server only.
        fix: the fix a failed start's message gives.
        clock: monotonic clock (tests inject one).

    """

    def __init__(self, label: str, command: list[str], port: int, *,
                 environment: Mapping[str, str] | None = None, fix: str = "",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.command = command
        self.port = port
        self.environment = dict(environment or {})
        self.fix = fix or "read the server's log above"
        self._clock = clock
        self._process: subprocess.Popen[bytes] | None = None
        # The log lives as long as the server; stop() closes and removes it.
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix="llem-server-", suffix=".log", delete=False)

    @property
    def base_url(self) -> str:
        """The OpenAI API root of the server."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        """The server process's id while it runs."""
        return None if self._process is None else self._process.pid

    def start(self, timeout_s: float | None = None) -> None:
        """Start the server and return once ``/health`` answers 200.

        Args:
            timeout_s: stop waiting (and the server) after this long; None: wait until it
                answers or exits. The server's start is the run's load phase, which the study
                limits with ``execution.load_timeout_s`` (raisable), as it limits an in-process
                engine's start; a fixed limit here would stop a large model's slow first load
                that the study allows. A server that exits while starting is noticed at once.

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
            env={**os.environ, **self.environment})
        deadline = math.inf if timeout_s is None else self._clock() + timeout_s
        while self._clock() < deadline:
            code = self._process.poll()
            if code is not None:
                tail = self.log_tail()
                self.stop()  # reaps it and removes its log
                raise BackendError(
                    f"{self.label} exited with status {code} while starting:\n{tail}",
                    fix=self.fix)
            if self._healthy():
                return
            time.sleep(0.5)
        tail = self.log_tail()
        self.stop()
        raise BackendError(
            f"{self.label} did not answer /health within {timeout_s:g} s:\n{tail}",
            fix="read the server's log above; a large model may need longer (the server's "
            "start is the run's load phase)")

    def _healthy(self) -> bool:
        url = f"http://127.0.0.1:{self.port}/health"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def get_json(self, path: str, timeout_s: float = 10.0) -> Any:
        """A route's JSON answer (``path`` from the server's root, e.g. ``/v1/models``).

        Raises:
            OSError: the server did not answer (``urllib.error.URLError`` is one).
            ValueError: the answer is not JSON.

        """
        url = f"http://127.0.0.1:{self.port}{path}"
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - loopback
            return json.load(response)

    def check_running(self) -> None:
        """Raise if the server has exited (a run whose server died is failed, not measured).

        Raises:
            BackendError: the process exited; the message carries its status and log's end.

        """
        code = None if self._process is None else self._process.poll()
        if code is not None:
            raise BackendError(
                f"{self.label} exited with status {code} during the run; its requests after "
                f"that failed:\n{self.log_tail()}",
                fix="read the server's log above (an engine error, or the machine's memory)")

    def models(self) -> dict[str, Any]:
        """The server's ``/v1/models`` entry for the served model.

        Empty when absent, or when the route does not answer.
        """
        try:
            listing = self.get_json("/v1/models")
        except (OSError, ValueError):
            return {}
        data = listing.get("data", []) if isinstance(listing, dict) else []
        return next((m for m in data if m.get("id") == SERVED_NAME), data[0] if data else {})

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
            print(f"{self.label}, last lines of its log:\n{tail}", file=sys.stderr)
        with contextlib.suppress(OSError):
            self._log.close()
            os.unlink(self._log.name)


def close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Close a client's (or an engine's) event loop after cancelling what still runs on it.

    Cancelled tasks and open async generators (a stream left early) need the loop to run once
    more to finish; closing it without that leaves them pending.
    """
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


def terminated_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn``: the kernel SIGTERMs the server when the harness's main thread dies.

    The server then shuts its engine processes down as on any SIGTERM.
    """
    return signalled_with_parent(signal.SIGTERM)


def openai_client(base_url: str) -> Any:
    """An ``openai.AsyncOpenAI`` client for a loopback server: no retries, no timeout, no pool cap.

    No connection limit of the client's own (the openai client pools 1,000): above it, sends
    would wait in the pool, an unrequested ``max_concurrency`` no figure would see. No retry:
    a retried request would be sent twice and counted once.
    """
    openai = importlib.import_module("openai")
    # The HTTP library the client is built on: httpx, or its successor httpx2 (openai 3).
    client_class = openai.DefaultAsyncHttpxClient
    http = importlib.import_module(client_class.__mro__[1].__module__.partition(".")[0])
    unlimited = http.Limits(max_connections=None, max_keepalive_connections=None)
    return openai.AsyncOpenAI(
        base_url=base_url, api_key="EMPTY", max_retries=0, timeout=None,
        http_client=openai.DefaultAsyncHttpxClient(limits=unlimited, timeout=None))


def openai_stream(client: Any, completion_kwargs: Callable[[Request], dict[str, Any]],
                  label: str, fix: str, cached_tokens: bool = True) -> StreamFn:
    """Serving through a server: one streamed ``/v1/completions`` call per request.

    Every SSE chunk that carries tokens becomes one :class:`StreamChunk` with the chunk's token
    ids; the final usage chunk must agree with the count received, and its
    ``prompt_tokens_details.cached_tokens``, where the server reports it, is the request's
    count of prompt tokens served from a cross-request cache.

    Args:
        client: the ``openai.AsyncOpenAI`` client (:func:`openai_client`).
        completion_kwargs: ``completions.create`` arguments for one request.
        label: how messages name the server.
        fix: the fix a miscounted stream's message gives.
        cached_tokens: whether the usage's cached-token count is the engine's measurement
            (False: ignored, the request's cached tokens stay unknown).

    """

    async def stream(request: Request, key: str) -> AsyncIterator[StreamChunk]:
        received = 0
        reported: int | None = None
        cached: int | None = None
        response = await client.completions.create(
            **completion_kwargs(request), extra_headers={"X-Request-Id": key})
        async for chunk in response:
            if chunk.usage is not None:
                reported = chunk.usage.completion_tokens
                cached = _cached_tokens(chunk.usage) if cached_tokens else None
            for choice in chunk.choices:
                ids = _token_ids(choice, label)
                received += len(ids)
                if ids:
                    yield StreamChunk(token_ids=ids)
        if received != request.max_new_tokens or reported not in (None, received):
            raise BackendError(
                f"request {request.request_id} produced {received} tokens through {label} "
                f"(usage says {reported}), expected exactly {request.max_new_tokens}", fix=fix)
        if cached is not None:
            yield StreamChunk(token_ids=[], cached_tokens=cached)

    return stream


def _token_ids(choice: Any, label: str) -> list[int]:
    """A streamed choice's token ids (an extension of the OpenAI schema both engines have)."""
    ids = getattr(choice, "token_ids", None)
    if ids is None:
        ids = (getattr(choice, "model_extra", None) or {}).get("token_ids")
    if ids is None:
        raise BackendError(
            f"{label} streamed a chunk without token_ids",
            fix="use an engine version whose completions API returns token ids per chunk "
            "(docs/serving.md names the versions)")
    return [int(token) for token in ids]


def _cached_tokens(usage: Any) -> int | None:
    details = getattr(usage, "prompt_tokens_details", None)
    if details is None:
        details = (getattr(usage, "model_extra", None) or {}).get("prompt_tokens_details")
    if isinstance(details, dict):
        value = details.get("cached_tokens")
    else:
        value = getattr(details, "cached_tokens", None)
    return None if value is None else int(value)


@dataclass
class _Streamed:
    """Tokens of one streamed request and the time each reached this process."""

    ids: list[int] = field(default_factory=list)
    times_s: list[float] = field(default_factory=list)
    chunk_times_s: list[float] = field(default_factory=list)
    cached_tokens: int | None = None


def generate_through(
    loop: asyncio.AbstractEventLoop, stream: StreamFn, requests: list[Request], call_id: int
) -> tuple[list[RequestOutput], PhaseMark]:
    """All requests at once through a serving stream function (a server's warmup).

    Every request is submitted at the call's start and every chunk stamped when it arrived;
    the phase mark ends prefill when the last request got its first token (approximate, as
    for any engine that batches in flight). The stream function checks each request's length.
    """

    async def one(request: Request) -> _Streamed:
        record = _Streamed()
        async for chunk in stream(request, f"llem-{call_id}-{request.request_id}"):
            arrived_s = time.perf_counter()
            record.ids.extend(chunk.token_ids)
            record.times_s.extend([arrived_s] * len(chunk.token_ids))
            if chunk.token_ids:
                record.chunk_times_s.append(arrived_s)
            if chunk.cached_tokens is not None:
                record.cached_tokens = chunk.cached_tokens
        return record

    async def every() -> list[_Streamed]:
        tasks = [asyncio.ensure_future(one(request)) for request in requests]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            # One failed request must not leave the others running into the next call.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    start_s = time.perf_counter()
    streamed = loop.run_until_complete(every())
    end_s = time.perf_counter()
    outputs = [
        RequestOutput(request.request_id, len(request.input_ids), len(record.ids),
                      start_s=start_s, end_s=record.times_s[-1] if record.times_s else None,
                      first_token_s=record.times_s[0] if record.times_s else None,
                      token_times_s=list(record.times_s), output_ids=list(record.ids),
                      chunk_times_s=list(record.chunk_times_s),
                      cached_input_tokens=record.cached_tokens)
        for request, record in zip(requests, streamed, strict=True)]
    prefill_end_s = max((output.first_token_s or start_s for output in outputs),
                        default=start_s)
    return outputs, PhaseMark(start_s=start_s, prefill_end_s=prefill_end_s, end_s=end_s)
