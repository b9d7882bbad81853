"""`llem cache list | prune` over a real cache directory."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from harness.engine_cache import EngineCache
from orchestrator.cli import main


def engine(target: Path) -> None:
    target.mkdir(parents=True)
    (target / "rank0.engine").write_bytes(b"x" * 1000)


def test_list_shows_entries_and_prune_removes_what_was_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("LLEM_ENGINE_CACHE", str(tmp_path))
    cache = EngineCache(tmp_path)
    kept = cache.get_or_build({"model": "tiny", "tensorrt_llm_version": "1.0.0",
                               "compute_capability": "9.0"}, engine)
    (tmp_path / ("0" * 64)).mkdir()  # partial: no key.json
    runner = CliRunner()

    listed = runner.invoke(main, ["cache", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    entries = {entry["key"]: entry for entry in json.loads(listed.output)}
    assert entries[kept.key]["state"] == "complete"
    assert entries[kept.key]["description"]["model"] == "tiny"
    assert entries["0" * 64]["state"] == "partial"
    table = runner.invoke(main, ["cache", "list"])
    assert kept.key[:12] in table.output and "1.0.0" in table.output

    pruned = runner.invoke(main, ["cache", "prune"])
    assert pruned.exit_code == 0 and "removed 1 entry" in pruned.output
    assert cache.lookup({"model": "tiny", "tensorrt_llm_version": "1.0.0",
                         "compute_capability": "9.0"}) == kept.engine_dir

    everything = runner.invoke(main, ["cache", "prune", "--all", "--root", str(tmp_path)])
    assert everything.exit_code == 0 and "removed 1 entry" in everything.output
    assert cache.entries() == []
    assert "the cache is empty" in runner.invoke(main, ["cache", "list"]).output


def test_an_engine_of_a_release_without_the_engine_runtime_is_listed_unusable_and_pruned(
        tmp_path, monkeypatch):
    monkeypatch.setenv("LLEM_ENGINE_CACHE", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "200")  # the table on one line per entry
    cache = EngineCache(tmp_path)
    # Written before descriptions named the runtime: an engine all the same.
    older = cache.get_or_build({"model": "tiny", "tensorrt_llm_version": "1.0.0",
                                "compute_capability": "9.0"}, engine)
    current = cache.get_or_build({"runtime": "engine", "model": "tiny",
                                  "tensorrt_llm_version": "1.2.1",
                                  "compute_capability": "9.0"}, engine)
    dead = cache.get_or_build({"runtime": "engine", "model": "tiny",
                               "tensorrt_llm_version": "1.4.0rc1",
                               "compute_capability": "9.0"}, engine)
    runner = CliRunner()

    listed = runner.invoke(main, ["cache", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    entries = {entry["key"]: entry for entry in json.loads(listed.output)}
    assert entries[dead.key]["state"] == "unusable" and entries[dead.key]["usable"] is False
    assert "tensorrt_llm 1.4.0rc1" in entries[dead.key]["unusable_reason"]
    assert "TensorRT-engine runtime" in entries[dead.key]["unusable_reason"]
    assert entries[dead.key]["description"]["tensorrt_llm_version"] == "1.4.0rc1"
    for kept in (older, current):
        assert entries[kept.key]["state"] == "complete" and entries[kept.key]["usable"] is True
        assert entries[kept.key]["unusable_reason"] is None

    table = runner.invoke(main, ["cache", "list"]).output.replace("┃", "│")
    rows = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[1:-1]]
            for line in table.splitlines() if line.count("│") > 2}
    header = rows.pop("key")
    assert header[header.index("runtime") + 1] == "tensorrt_llm"
    assert rows[dead.key[:12]][header.index("state")] == "unusable"
    assert rows[older.key[:12]][header.index("runtime")] == "engine"
    assert rows[current.key[:12]][header.index("tensorrt_llm")] == "1.2.1"

    assert "unusable" in runner.invoke(main, ["cache", "prune", "--help"]).output
    pruned = runner.invoke(main, ["cache", "prune"])
    assert pruned.exit_code == 0 and "removed 1 entry" in pruned.output
    assert f"{dead.key[:12]}  unusable" in pruned.output
    assert sorted(entry.key for entry in cache.entries()) == sorted([older.key, current.key])


def test_engines_of_another_release_than_the_images_are_unusable_with_it(tmp_path, monkeypatch):
    # The realistic case: the image pin moved from 1.0.0 to 1.2.1, so the 1.0.0 engines are
    # never hit again; named with --tensorrt-llm, they are listed unusable and pruned.
    monkeypatch.setenv("LLEM_ENGINE_CACHE", str(tmp_path))
    cache = EngineCache(tmp_path)
    old = cache.get_or_build({"runtime": "engine", "model": "tiny",
                              "tensorrt_llm_version": "1.0.0"}, engine)
    new = cache.get_or_build({"runtime": "engine", "model": "tiny",
                              "tensorrt_llm_version": "1.2.1"}, engine)
    runner = CliRunner()

    listed = runner.invoke(main, ["cache", "list", "--json"]).output
    plain = {e["key"]: e for e in json.loads(listed)}
    assert plain[old.key]["state"] == plain[new.key]["state"] == "complete"
    judged = runner.invoke(main, ["cache", "list", "--json", "--tensorrt-llm", "1.2.1"])
    entries = {e["key"]: e for e in json.loads(judged.output)}
    assert entries[old.key]["state"] == "unusable"
    assert "built by tensorrt_llm 1.0.0" in entries[old.key]["unusable_reason"]
    assert "not 1.2.1" in entries[old.key]["unusable_reason"]
    assert entries[new.key]["state"] == "complete"

    # a partial or malformed version is bad input: "1.2" would judge every 1.2.x engine
    for wrong in ("1.2", "latest"):
        refused = runner.invoke(main, ["cache", "prune", "--tensorrt-llm", wrong])
        assert refused.exit_code == 2 and "--tensorrt-llm" in refused.output
    assert len(cache.entries()) == 2  # nothing removed
    pruned = runner.invoke(main, ["cache", "prune", "--tensorrt-llm", "v1.2.1"])
    assert pruned.exit_code == 0 and "removed 1 entry" in pruned.output
    assert [entry.key for entry in cache.entries()] == [new.key]


def test_images_build_refuses_extras_for_the_cpu_image_as_bad_input():
    done = CliRunner().invoke(main, ["images", "build", "cpu", "--extras", "zeus"])
    assert done.exit_code == 2
    assert "--extras applies to the GPU images" in done.output
