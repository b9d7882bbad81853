"""vLLM's OpenAI server path: flags from engine arguments, the process's start and stop, and
the streamed completions as the ``openai`` client yields them.

The server process here is a real process answering the two routes the harness reads; the
client is a stand-in with the ``openai`` client's shape (``completions.create`` returning an
async iterator of chunks with ``choices[].token_ids`` and a final ``usage``).
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.backends.base import Request
from harness.backends.vllm import server
from harness.errors import BackendError
from harness.schema.config import DecoderConfig

HEALTHY = textwrap.dedent("""
    import http.server, json, sys
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/health":
                body = b""
            elif self.path == "/v1/models":
                body = json.dumps({"data": [{"id": "llem", "max_model_len": 96}]}).encode()
            else:
                self.send_error(404); return
            self.send_response(200); self.end_headers(); self.wfile.write(body)
        def log_message(self, *args):
            print("request", *args, flush=True)
    print("server starting", flush=True)
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
""")


def test_engine_arguments_become_the_servers_flags() -> None:
    flags = server.engine_flags({
        "max_num_seqs": 4, "enable_prefix_caching": False, "enforce_eager": True,
        "quantization": None, "override_generation_config": {"a": 1}, "dtype": "float32",
    })

    assert flags == ["--max-num-seqs", "4", "--no-enable-prefix-caching", "--enforce-eager",
                     "--override-generation-config", '{"a": 1}', "--dtype", "float32"]


def test_the_command_listens_on_loopback_under_the_served_name() -> None:
    command = server.server_command({"model": "/m", "seed": 3, "disable_log_stats": False},
                                    8123)

    assert command[1:3] == ["-m", server.MODULE]
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == "8123"
    assert command[command.index("--served-model-name") + 1] == server.SERVED_NAME
    assert command[command.index("--model") + 1] == "/m"
    assert command.count("--model") == 1 and "--seed" in command
    # statistics on is the server's default, and --disable-log-stats has no --no- form
    assert not any("log-stats" in part for part in command)


def test_a_server_that_answers_health_is_started_read_and_stopped(tmp_path: Path) -> None:
    script = tmp_path / "fake_server.py"
    script.write_text(HEALTHY)
    port = server.free_port()
    process = server.VllmServer([sys.executable, str(script), str(port)], port)
    process.start(timeout_s=30)
    try:
        assert process.models()["max_model_len"] == 96
        assert "server starting" in process.log_tail()
    finally:
        process.stop(grace_s=5)
    with pytest.raises(OSError):
        process.models()  # nothing listens any more


def test_a_server_that_exits_while_starting_fails_the_load_with_its_log(tmp_path: Path) -> None:
    script = tmp_path / "dying.py"
    script.write_text("print('ValueError: max_num_seqs is too large'); raise SystemExit(3)\n")
    process = server.VllmServer([sys.executable, str(script)], server.free_port())

    with pytest.raises(BackendError) as raised:
        process.start(timeout_s=30)

    assert "exited with status 3" in raised.value.message
    assert "max_num_seqs is too large" in raised.value.message


def test_a_server_that_never_answers_is_stopped_after_the_timeout(tmp_path: Path) -> None:
    script = tmp_path / "silent.py"
    script.write_text("import time\nprint('loading', flush=True)\ntime.sleep(600)\n")
    process = server.VllmServer([sys.executable, str(script)], server.free_port())

    with pytest.raises(BackendError) as raised:
        process.start(timeout_s=1.5)

    assert "did not answer /health within 1.5 s" in raised.value.message
    assert "loading" in raised.value.message


class FakeCompletions:
    """``client.completions`` of the openai package, streaming prepared chunks."""

    def __init__(self, chunks: list[list[int]], usage: int | None) -> None:
        self.chunks = chunks
        self.usage = usage
        self.calls: list[dict[str, Any]] = []

    async def create(self, **kwargs: Any) -> AsyncIterator[Any]:
        self.calls.append(kwargs)

        async def events() -> AsyncIterator[Any]:
            for ids in self.chunks:
                await asyncio.sleep(0)
                # vLLM's extension fields arrive in the pydantic model's extras
                yield SimpleNamespace(usage=None, choices=[
                    SimpleNamespace(model_extra={"token_ids": ids}, text="x")])
            if self.usage is not None:
                yield SimpleNamespace(choices=[],
                                      usage=SimpleNamespace(completion_tokens=self.usage))

        return events()


def collect(chunks: list[list[int]], usage: int | None, max_new_tokens: int = 5
            ) -> tuple[list[list[int]], FakeCompletions]:
    completions = FakeCompletions(chunks, usage)
    client = SimpleNamespace(completions=completions)
    stream = server.openai_stream(client, DecoderConfig(), {"temperature": 0.0})
    request = Request(request_id=7, input_ids=[5, 6, 7], max_new_tokens=max_new_tokens)

    async def run() -> list[list[int]]:
        return [chunk.token_ids async for chunk in stream(request, "llem-serve-7")]

    return asyncio.run(run()), completions


def test_each_streamed_chunk_carries_its_token_ids_and_the_request_asks_for_exact_length(
) -> None:
    received, completions = collect([[1], [2, 3], [], [4, 5]], usage=5)

    assert received == [[1], [2, 3], [4, 5]]  # a chunk without tokens is no chunk
    (call,) = completions.calls
    assert call["prompt"] == [5, 6, 7] and call["max_tokens"] == 5 and call["stream"] is True
    assert call["extra_body"]["min_tokens"] == 5 and call["extra_body"]["ignore_eos"] is True
    assert call["extra_body"]["return_token_ids"] is True
    assert call["temperature"] == 0.0 and call["model"] == server.SERVED_NAME


@pytest.mark.parametrize(("chunks", "usage"), [([[1], [2]], 2), ([[1], [2, 3], [4, 5]], 4)])
def test_a_short_or_miscounted_stream_fails_the_request(chunks: list[list[int]],
                                                        usage: int) -> None:
    with pytest.raises(BackendError, match="expected exactly 5"):
        collect(chunks, usage)


def test_a_chunk_without_token_ids_is_an_error_not_a_guess() -> None:
    client = SimpleNamespace(completions=FakeCompletions([], None))

    async def bare(**kwargs: Any) -> AsyncIterator[Any]:
        async def events() -> AsyncIterator[Any]:
            yield SimpleNamespace(usage=None, choices=[SimpleNamespace(model_extra={},
                                                                       text="hello")])
        return events()

    client.completions.create = bare
    stream = server.openai_stream(client, DecoderConfig(), {"temperature": 0.0})

    async def run() -> None:
        async for _ in stream(Request(0, [1], 1), "k"):
            pass

    with pytest.raises(BackendError, match="without token_ids"):
        asyncio.run(run())
