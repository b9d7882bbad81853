"""The TensorRT-LLM engine cache: build once per key, never use a partial or foreign entry."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from pathlib import Path

import pytest

from harness.engine_cache import KEY_FILE, EngineCache, cache_key, engine_runtime_in

DESCRIPTION = {"model": "/models/llama", "revision": "abc", "max_batch_size": 8,
               "tensorrt_llm_version": "1.0.0", "compute_capability": "9.0"}


def write_engine(target: Path, marker: str = "engine") -> None:
    target.mkdir(parents=True)
    (target / "config.json").write_text(json.dumps({"build_config": {"max_batch_size": 8}}))
    (target / "rank0.engine").write_text(marker)


def test_key_is_sha256_of_the_canonical_description():
    reordered = dict(reversed(list(DESCRIPTION.items())))
    assert cache_key(DESCRIPTION) == cache_key(reordered)
    assert len(cache_key(DESCRIPTION)) == 64
    for field, value in [("max_batch_size", 16), ("tensorrt_llm_version", "1.0.1"),
                         ("compute_capability", "8.0")]:
        assert cache_key({**DESCRIPTION, field: value}) != cache_key(DESCRIPTION), field


def test_miss_builds_then_hit_reuses(tmp_path):
    cache = EngineCache(tmp_path)
    builds = []
    first = cache.get_or_build(DESCRIPTION, lambda target: (builds.append(1),
                                                            write_engine(target))[1])
    second = cache.get_or_build(DESCRIPTION, lambda target: builds.append(2))
    assert (first.hit, second.hit) == (False, True)
    assert first.build_s is not None and second.build_s is None
    assert builds == [1]
    assert first.engine_dir == second.engine_dir == tmp_path / first.key / "engine"
    recorded = json.loads((tmp_path / first.key / KEY_FILE).read_text())
    assert recorded["key"] == first.key and recorded["description"] == DESCRIPTION
    assert cache.lookup(DESCRIPTION) == first.engine_dir
    assert not list(tmp_path.glob(".building-*"))


def _build_slowly(root: str, counter: str, results: multiprocessing.Queue) -> None:
    def build(target: Path) -> None:
        with open(counter, "a") as handle:
            handle.write("built\n")
        time.sleep(0.5)
        write_engine(target)

    outcome = EngineCache(Path(root)).get_or_build(DESCRIPTION, build)
    results.put((outcome.hit, str(outcome.engine_dir)))


def test_two_concurrent_builders_of_one_key_build_once(tmp_path):
    counter = tmp_path / "builds.txt"
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    builders = [context.Process(target=_build_slowly,
                                args=(str(tmp_path / "cache"), str(counter), results))
                for _ in range(2)]
    for builder in builders:
        builder.start()
    for builder in builders:
        builder.join(600)
    outcomes = sorted(results.get(timeout=60) for _ in builders)
    assert counter.read_text().splitlines() == ["built"]
    assert [hit for hit, _ in outcomes] == [False, True]
    assert outcomes[0][1] == outcomes[1][1]


def test_two_threads_of_one_process_also_build_once(tmp_path):
    cache = EngineCache(tmp_path)
    builds = []
    outcomes = []

    def build(target: Path) -> None:
        builds.append(threading.get_ident())
        time.sleep(0.3)
        write_engine(target)

    threads = [threading.Thread(target=lambda: outcomes.append(
        cache.get_or_build(DESCRIPTION, build))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1
    assert sorted(outcome.hit for outcome in outcomes) == [False, True, True]


def test_partial_entry_is_rebuilt_never_used(tmp_path):
    cache = EngineCache(tmp_path)
    entry = tmp_path / cache_key(DESCRIPTION)
    write_engine(entry / "engine", marker="half-written")  # no key.json: a crash mid-build
    assert cache.lookup(DESCRIPTION) is None
    outcome = cache.get_or_build(DESCRIPTION, lambda target: write_engine(target, "fresh"))
    assert outcome.hit is False
    assert (outcome.engine_dir / "rank0.engine").read_text() == "fresh"


def test_entry_without_engine_files_is_rebuilt(tmp_path):
    cache = EngineCache(tmp_path)
    first = cache.get_or_build(DESCRIPTION, write_engine)
    for path in first.engine_dir.iterdir():
        path.unlink()
    assert cache.lookup(DESCRIPTION) is None
    assert cache.get_or_build(DESCRIPTION, write_engine).hit is False


def test_mismatching_key_file_is_never_used(tmp_path):
    cache = EngineCache(tmp_path)
    first = cache.get_or_build(DESCRIPTION, lambda target: write_engine(target, "original"))
    key_file = tmp_path / first.key / KEY_FILE
    recorded = json.loads(key_file.read_text())
    recorded["description"] = {**DESCRIPTION, "max_batch_size": 64}  # describes another engine
    key_file.write_text(json.dumps(recorded))
    assert cache.lookup(DESCRIPTION) is None
    builds = []
    outcome = cache.get_or_build(DESCRIPTION, lambda target: (builds.append(1),
                                                              write_engine(target, "rebuilt"))[1])
    assert builds == [1] and outcome.hit is False
    assert (outcome.engine_dir / "rank0.engine").read_text() == "rebuilt"


def test_a_failed_build_leaves_nothing_that_looks_usable(tmp_path):
    cache = EngineCache(tmp_path)

    def broken(target: Path) -> None:
        write_engine(target)
        raise RuntimeError("builder ran out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        cache.get_or_build(DESCRIPTION, broken)
    assert cache.lookup(DESCRIPTION) is None
    assert [entry.state for entry in cache.entries()] == []


def test_a_build_that_writes_nothing_fails(tmp_path):
    with pytest.raises(RuntimeError, match="wrote nothing"):
        EngineCache(tmp_path).get_or_build(DESCRIPTION, lambda target: target.mkdir())


def test_entries_and_prune(tmp_path):
    cache = EngineCache(tmp_path)
    kept = cache.get_or_build(DESCRIPTION, write_engine)
    other = {**DESCRIPTION, "max_batch_size": 32}
    cache.get_or_build(other, write_engine)
    write_engine(tmp_path / ("f" * 64) / "engine")  # partial
    (tmp_path / f".building-{'e' * 64}-x1").mkdir()  # a builder that died
    states = sorted(entry.state for entry in cache.entries())
    assert states == ["building", "complete", "complete", "partial"]

    removed = cache.prune()  # only the broken ones
    assert sorted(entry.state for entry in removed) == ["building", "partial"]
    assert len(cache.entries()) == 2

    old = time.time() - 10 * 86400
    import os
    os.utime(tmp_path / cache_key(other) / KEY_FILE, (old, old))
    removed = cache.prune(unused_for_s=86400)
    assert [entry.key for entry in removed] == [cache_key(other)]
    assert cache.lookup(DESCRIPTION) == kept.engine_dir

    assert [entry.key for entry in cache.prune(everything=True)] == [kept.key]
    assert cache.entries() == []


def test_prune_skips_a_key_being_built(tmp_path):
    cache = EngineCache(tmp_path)
    key = cache_key(DESCRIPTION)
    staging = tmp_path / f".building-{key}-abc"
    staging.mkdir()
    with cache._lock(key).acquire(timeout=1):
        assert cache.prune(everything=True) == []
    assert staging.exists()


@pytest.mark.parametrize(("version", "carried"), [
    ("0.17.0", True), ("0.21.0", True), ("0.21.0rc1", True),
    ("1.0.0", True), ("1.0.0rc4", True), ("1.1.0", True), ("1.2.0rc6", True),
    ("1.2.1", True), ("1.2.1.post1", True), ("1.2.1+cu130", True), ("1.2.9", True),
    ("1.3.0", False), ("1.3.0.post1", False), ("1.3.1rc1", False), ("1.3.2", False),
    ("1.4.0rc1", False), ("1.4.0rc4", False), ("2.0.0", False),
    # The runtime was removed between two 1.3.0 release candidates: which is not known.
    ("1.3.0rc0", None), ("1.3.0rc10", None), ("1.3.0rc29", None), ("1.3.0.dev20260801", None),
    ("", None), (None, None), ("unknown", None), ("1.x", None),
])
def test_which_releases_carry_the_engine_runtime(version: str | None,
                                                 carried: bool | None) -> None:
    assert engine_runtime_in(version) is carried


def test_an_entry_built_by_a_release_without_the_engine_runtime_is_unusable(tmp_path):
    cache = EngineCache(tmp_path)
    cache.get_or_build({**DESCRIPTION, "tensorrt_llm_version": "1.3.0"}, write_engine)
    candidate = cache.get_or_build({**DESCRIPTION, "tensorrt_llm_version": "1.3.0rc20"},
                                   write_engine)

    entries = {entry.state: entry for entry in cache.entries()}
    assert sorted(entries) == ["complete", "unusable"]
    assert entries["complete"].key == candidate.key  # not known: kept
    assert entries["complete"].usable and entries["complete"].unusable_reason is None
    assert not entries["unusable"].usable
    assert "tensorrt_llm 1.3.0" in str(entries["unusable"].unusable_reason)

    assert [entry.state for entry in cache.prune()] == ["unusable"]
    assert [entry.key for entry in cache.entries()] == [candidate.key]
