"""Models are fetched on the host before any run (``llem fetch``, ``llem run``), never by runs.

``llem`` runs as a subprocess against tests/hub_server.py, a local stand-in for the Hub that
serves a tiny model's files (``HF_ENDPOINT``), with the Hugging Face cache under tmp_path.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
_spec = importlib.util.spec_from_file_location("hub_server", REPO / "tests" / "hub_server.py")
assert _spec is not None and _spec.loader is not None
hub_server = importlib.util.module_from_spec(_spec)
sys.modules["hub_server"] = hub_server
_spec.loader.exec_module(hub_server)
HubRepo, HubServer = hub_server.HubRepo, hub_server.HubServer

MODEL = "llem-test/tiny"
COMMIT = "c0ffee0000000000000000000000000000000001"
SECRET = "hf_llemTestSecretValue1234567890"
NOT_FETCHED = {"pytorch_model.bin": b"a second weight format", "README.md": b"# tiny\n"}


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A tiny model's files, its weights large enough that a download cut after three quarters
    has passed huggingface_hub's 10 MiB read chunk, so has bytes on disk to resume from."""
    for module in ("torch", "transformers", "tokenizers"):
        pytest.importorskip(module)
    from harness.tiny_model import build_tiny_model

    directory = build_tiny_model(tmp_path_factory.mktemp("hub") / "model", hidden_size=384)
    files = {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}
    assert len(files["model.safetensors"]) * 3 // 4 > 12 * 2**20
    return files


def repo(files: dict[str, bytes], **options: object) -> HubRepo:
    return HubRepo(MODEL, {**files, **NOT_FETCHED}, commit=COMMIT, refs=("main", "v1"),
                   **options)


def study(tmp_path: Path, model: str = MODEL, revision: str = "v1") -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(
        f"name: t\nmodel: {model}\nrevision: {revision}\nbackend: pytorch\nprecision: fp32\n"
        "n: 2\ninput_len: 8\noutput_len: 4\nwarmup: {n_warmup: 1, min_seconds: 0}\n"
        "execution: {config_gap_s: 0, cycle_gap_s: 0}\n")
    return path


def llem(tmp_path: Path, endpoint: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``llem ARGS`` with the hub at ``endpoint`` and the Hugging Face home under tmp_path."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    clean.update(PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                 HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT=endpoint,
                 HF_HUB_DISABLE_TELEMETRY="1", **env)
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=tmp_path,
                          env=clean, capture_output=True, text=True, timeout=600, check=False)


def snapshot(tmp_path: Path) -> Path:
    return tmp_path / "hf" / "hub" / f"models--{MODEL.replace('/', '--')}" / "snapshots" / COMMIT


def downloads(hub: HubServer) -> list[str]:
    return [r.path.rsplit("/", 1)[1] for r in hub.requests
            if r.method == "GET" and "/resolve/" in r.path]


def test_fetch_puts_what_inference_needs_in_the_cache_at_the_revision(model_files, tmp_path):
    with HubServer([repo(model_files)]) as hub:
        done = llem(tmp_path, hub.endpoint, "fetch", str(study(tmp_path)))
        assert done.returncode == 0, done.stderr
        assert "1 hub model(s) ready" in done.stdout
        refs = snapshot(tmp_path).parent.parent / "refs"
        assert (refs / "v1").read_text() == COMMIT
        fetched = {p.name: p.read_bytes() for p in snapshot(tmp_path).iterdir()}
        assert fetched == model_files  # every config, tokenizer and weight file; nothing else
        served = len(hub.requests)
        again = llem(tmp_path, hub.endpoint, "fetch", str(study(tmp_path)))
        assert again.returncode == 0, again.stderr
        assert "in the cache" in again.stderr
        assert len(hub.requests) == served  # present: not even asked about


@pytest.mark.slow
def test_run_fetches_first_and_a_fetched_model_then_runs_offline(model_files, tmp_path):
    with HubServer([repo(model_files)]) as hub:
        done = llem(tmp_path, hub.endpoint, "run", str(study(tmp_path)), "--runner", "local",
                    "--output", "out", "--json", HF_TOKEN=SECRET)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stderr.index("fetching from") < done.stderr.index("runs to do")
        assert set(downloads(hub)) == set(model_files)
    # Not cached when the study was first loaded: loaded again after the fetch, the run is
    # hashed at (and loaded from) the commit that v1 pointed at.
    (result,) = (tmp_path / "out").glob("*/*/result.json")
    assert json.loads(result.read_text())["config"]["model_digest"] == COMMIT
    # The hub is gone: the cache alone serves the run (HF_HUB_OFFLINE=1 inside it).
    offline = llem(tmp_path, hub.endpoint, "run", str(study(tmp_path)), "--runner", "local",
                   "--output", "out", "--offline", HF_TOKEN=SECRET)
    assert offline.returncode == 0, offline.stderr[-3000:]
    assert json.loads(done.stdout)["counts"] == {"completed": 1}
    assert_secret_nowhere(tmp_path, done, offline)


def test_a_gated_model_needs_hf_token_which_is_never_shown_or_written(model_files, tmp_path):
    with HubServer([repo(model_files, token="the-right-token")]) as hub:
        refused = llem(tmp_path, hub.endpoint, "fetch", str(study(tmp_path)), HF_TOKEN=SECRET)
        assert refused.returncode == 2
        assert f"model '{MODEL}' at revision 'v1' refused access (HTTP 401)" in refused.stderr
        assert "set HF_TOKEN" in refused.stderr and "licence" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert not snapshot(tmp_path).exists()
        allowed = llem(tmp_path, hub.endpoint, "fetch", str(study(tmp_path)),
                       HF_TOKEN="the-right-token")
        assert allowed.returncode == 0, allowed.stderr
        assert all(r.authorised for r in hub.requests if "/resolve/" in r.path)
    assert_secret_nowhere(tmp_path, refused)
    assert_secret_nowhere(tmp_path, allowed, secret="the-right-token")


def test_a_download_cut_off_mid_file_resumes_where_it_stopped(model_files, tmp_path):
    with HubServer([repo(model_files, drop_once={"model.safetensors"})]) as hub:
        done = llem(tmp_path, hub.endpoint, "fetch", str(study(tmp_path)))
        assert done.returncode == 0, done.stderr
        weights = [r for r in hub.requests
                   if r.method == "GET" and r.path.endswith("/model.safetensors")]
    assert weights[0].range is None
    assert len(weights) == 2 and weights[1].range is not None
    resumed_at = int(weights[1].range.removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at < len(model_files["model.safetensors"])
    stored = (snapshot(tmp_path) / "model.safetensors").read_bytes()
    assert hashlib.sha256(stored).digest() == hashlib.sha256(
        model_files["model.safetensors"]).digest()


@pytest.mark.parametrize(("model", "revision"), [("llem-test/no-such-model", "main"),
                                                 (MODEL, "no-such-branch")])
def test_a_model_or_revision_the_hub_lacks_is_bad_input(model_files, tmp_path, model, revision):
    with HubServer([repo(model_files)]) as hub:
        done = llem(tmp_path, hub.endpoint, "fetch", str(study(tmp_path, model, revision)))
    assert done.returncode == 2
    assert f"model '{model}' at revision '{revision}' was not found on {hub.endpoint}" in (
        done.stderr)


def test_an_unreachable_hub_is_named_with_the_offline_way_out(model_files, tmp_path):
    with HubServer([]) as hub:
        endpoint = hub.endpoint  # nothing listens there once the server is closed
    done = llem(tmp_path, endpoint, "run", str(study(tmp_path)), "--runner", "local",
                "--output", "out")
    assert done.returncode == 2
    assert f"the model hub {endpoint} cannot be reached to fetch model '{MODEL}'" in done.stderr
    assert "--offline" in done.stderr
    assert not (tmp_path / "out").exists()


def test_offline_refuses_a_missing_model_and_names_llem_fetch(tmp_path):
    with HubServer([]) as hub:
        done = llem(tmp_path, hub.endpoint, "run", str(study(tmp_path)), "--runner", "local",
                    "--output", "out", "--offline")
        assert hub.requests == []
    assert done.returncode == 2
    assert f"model '{MODEL}' at revision 'v1' is not in the Hugging Face cache" in done.stderr
    assert f"llem fetch {tmp_path / 's.yaml'}" in done.stderr
    assert not (tmp_path / "out").exists()


def test_hf_hub_offline_on_the_host_forbids_fetching(tmp_path):
    with HubServer([]) as hub:
        done = llem(tmp_path, hub.endpoint, "fetch", str(study(tmp_path)), HF_HUB_OFFLINE="1")
    assert done.returncode == 2
    assert "HF_HUB_OFFLINE is set" in done.stderr and "unset HF_HUB_OFFLINE" in done.stderr


def assert_secret_nowhere(root: Path, *outputs: subprocess.CompletedProcess[str],
                          secret: str = SECRET) -> None:
    for output in outputs:
        assert secret not in output.stdout and secret not in output.stderr
    written = [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert written == []


def test_a_repository_without_loadable_weights_is_bad_input(model_files, tmp_path):
    configs_only = {name: data for name, data in model_files.items()
                    if not name.endswith(".safetensors")}
    with HubServer([HubRepo(MODEL, configs_only, commit=COMMIT, refs=("main", "v1"))]) as hub:
        done = llem(tmp_path, hub.endpoint, "fetch", str(study(tmp_path)))
    assert done.returncode == 2
    assert f"model '{MODEL}' at revision 'v1' has no config.json and weights" in done.stderr


def test_one_weight_format_is_fetched_safetensors_first():
    from harness.models import inference_patterns

    both = inference_patterns(["config.json", "model.safetensors", "pytorch_model.bin"])
    assert "model*.safetensors" in both and "pytorch_model*.bin" not in both
    bin_only = inference_patterns(["config.json", "pytorch_model-00001-of-00002.bin"])
    assert "pytorch_model*.bin" in bin_only and "model*.safetensors" not in bin_only


def test_hub_ids_are_told_from_paths(tmp_path, monkeypatch):
    from harness.models import is_hub_id

    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "local").mkdir(parents=True)
    assert is_hub_id("meta-llama/Llama-3.2-1B") and is_hub_id("gpt2")
    # While a study file is read, an existing directory beside it wins (and becomes an
    # absolute path); once loaded, a relative name is a hub id whatever the cwd holds.
    assert not is_hub_id("org/local", tmp_path)
    assert is_hub_id("org/local")
    assert not any(map(is_hub_id, ["./model", "/abs/model", "~/m", "a/b/c", "a--b/c"]))
