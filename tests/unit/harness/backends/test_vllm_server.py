"""vLLM's OpenAI server path: flags from engine arguments, the process's start and stop, and
the streamed completions as the ``openai`` client yields them.

The server process here is a real process answering the two routes the harness reads; the
client is a stand-in with the ``openai`` client's shape (``completions.create`` returning an
async iterator of chunks with ``choices[].token_ids`` and a final ``usage``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.backends import openai_server
from harness.backends.base import Request
from harness.backends.vllm import server
from harness.errors import BackendError
from harness.schema.config import DecoderConfig

HEALTHY = textwrap.dedent("""
    import http.server, json, os, sys
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/health":
                body = b""
            elif self.path == "/v1/models":
                body = json.dumps({"data": [{"id": "llem", "max_model_len": 96}]}).encode()
            elif (self.path == "/server_info?config_format=json"
                  and os.environ.get("VLLM_SERVER_DEV_MODE") == "1"):
                body = json.dumps({"vllm_config": {"scheduler_config": {"max_num_seqs": 7}},
                                   "vllm_env": {}}).encode()
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
    port = openai_server.free_port()
    process = server.VllmServer([sys.executable, str(script), str(port)], port)
    process.start(timeout_s=30)
    try:
        assert process.models()["max_model_len"] == 96
        # the development route, there because the server's environment turned it on
        config = process.vllm_config()
        assert config is not None and config["scheduler_config"]["max_num_seqs"] == 7
        assert "server starting" in process.log_tail()
    finally:
        process.stop(grace_s=5)
    assert process.models() == {}  # nothing listens any more


def test_a_server_that_exits_while_starting_fails_the_load_with_its_log(tmp_path: Path) -> None:
    script = tmp_path / "dying.py"
    script.write_text("print('ValueError: max_num_seqs is too large'); raise SystemExit(3)\n")
    process = server.VllmServer([sys.executable, str(script)], openai_server.free_port())

    with pytest.raises(BackendError) as raised:
        process.start(timeout_s=30)

    assert "exited with status 3" in raised.value.message
    assert "max_num_seqs is too large" in raised.value.message


def test_a_server_that_never_answers_is_stopped_after_the_timeout(tmp_path: Path) -> None:
    script = tmp_path / "silent.py"
    script.write_text("import time\nprint('loading', flush=True)\ntime.sleep(600)\n")
    process = server.VllmServer([sys.executable, str(script)], openai_server.free_port())

    with pytest.raises(BackendError) as raised:
        process.start(timeout_s=1.5)

    assert "did not answer /health within 1.5 s" in raised.value.message
    assert "loading" in raised.value.message


def test_a_slow_start_is_limited_by_the_runs_load_limit_not_by_the_server_path(
    tmp_path: Path,
) -> None:
    # A large model's first load (weights read from storage, compilation, CUDA graphs) can
    # take longer than 15 min; execution.load_timeout_s (30 min by default, and raisable) is
    # the limit the study sets on it, and the in-process client has no other. The server path
    # must not stop the same load earlier. The clock says 20 min pass between polls.
    script = tmp_path / "slow_server.py"
    script.write_text("import time, runpy, sys\ntime.sleep(1.0)\n"
                      "sys.argv = sys.argv[1:]\nrunpy.run_path(sys.argv[0], run_name='__main__')\n")
    healthy = tmp_path / "fake_server.py"
    healthy.write_text(HEALTHY)
    readings = iter(range(0, 10**9, 1200))
    port = openai_server.free_port()
    process = server.VllmServer([sys.executable, str(script), str(healthy), str(port)], port,
                                clock=lambda: float(next(readings)))
    try:
        process.start()
        assert process.models()["max_model_len"] == 96
        # the development route, there because the server's environment turned it on
        config = process.vllm_config()
        assert config is not None and config["scheduler_config"]["max_num_seqs"] == 7
    finally:
        process.stop(grace_s=5)


HARNESS = textwrap.dedent("""
    import sys, time
    from harness.backends import openai_server
    from harness.backends.vllm import server
    port = openai_server.free_port()
    started = server.VllmServer([sys.executable, sys.argv[1], str(port)], port)
    started.start(timeout_s=30)
    print(started._process.pid, flush=True)
    time.sleep(600)
""")


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended but not reaped, counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and PR_SET_PDEATHSIG")
def test_the_server_does_not_outlive_a_killed_harness(tmp_path: Path) -> None:
    # The server runs in a session of its own (so that stop() reaches its engine processes),
    # which also puts it outside the harness's process group: the group the local runner
    # signals, and llem clean kills, when a run is stopped or its orchestrator died. A
    # harness killed outright (SIGKILL after the grace period, or its orchestrator gone) must
    # not leave the server holding the GPU for the next run.
    fake = tmp_path / "fake_server.py"
    fake.write_text(HEALTHY)
    harness_script = tmp_path / "starts_a_server.py"
    harness_script.write_text(HARNESS)
    root = Path(__file__).resolve().parents[4]
    harness = subprocess.Popen([sys.executable, str(harness_script), str(fake)],
                               stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(root)})
    server_pid = None
    try:
        assert harness.stdout is not None
        server_pid = int(harness.stdout.readline())
        assert _alive(server_pid)
        harness.kill()
        harness.wait()
        deadline = time.monotonic() + 10
        while _alive(server_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(server_pid), "the server outlived the harness that started it"
    finally:
        harness.kill()
        harness.wait()
        if server_pid is not None and _alive(server_pid):
            os.kill(server_pid, signal.SIGKILL)


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


def test_the_usages_cached_prompt_tokens_reach_the_request() -> None:
    # vLLM's usage, with --enable-prompt-tokens-details, says how many prompt tokens came from
    # the prefix cache; the stream passes the count on (a token-less chunk after the last)
    completions = FakeCompletions([[1], [2]], usage=2)
    usage = SimpleNamespace(completion_tokens=2,
                            prompt_tokens_details=SimpleNamespace(cached_tokens=3))

    async def create(**kwargs: Any) -> AsyncIterator[Any]:
        async def events() -> AsyncIterator[Any]:
            for ids in completions.chunks:
                yield SimpleNamespace(usage=None, choices=[
                    SimpleNamespace(model_extra={"token_ids": ids})])
            yield SimpleNamespace(choices=[], usage=usage)
        return events()

    completions.create = create  # type: ignore[method-assign]
    stream = server.openai_stream(SimpleNamespace(completions=completions), DecoderConfig(), {})

    async def run() -> list[Any]:
        return [chunk async for chunk in stream(Request(0, [1, 2, 3], 2), "k")]

    chunks = asyncio.run(run())
    assert [chunk.token_ids for chunk in chunks] == [[1], [2], []]
    assert chunks[-1].cached_tokens == 3
    assert server.FRONTEND_FLAGS[0] in server.server_command({"model": "/m"}, 1)
