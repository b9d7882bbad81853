import errno
import json
import os

import pytest

import harness.io
from harness.io import (
    DiskFullError,
    EventLog,
    atomic_open,
    mount_point,
    read_events,
    write_bytes,
    write_json,
    write_text,
)
from harness.schema.events import PhaseEvent, ProgressEvent, UnknownEvent


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path):
    target = tmp_path / "result.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write('{"v": 2')
        raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temp file left


def failing(code):
    """A stand-in for an os call that fails with ``code``, as the kernel does on a full disk."""

    def call(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return call


@pytest.mark.parametrize("call", ["fsync", "replace"])
@pytest.mark.parametrize("write", [
    lambda path: write_json(path, {"v": 2}),
    lambda path: write_text(path, '{"v": 2}'),
    lambda path: write_bytes(path, b'{"v": 2}'),
])
def test_a_full_disk_names_its_filesystem_and_keeps_the_old_file(tmp_path, monkeypatch, call,
                                                                 write):
    target = tmp_path / "manifest.json"
    write_json(target, {"v": 1})
    monkeypatch.setattr(harness.io.os, call, failing(errno.ENOSPC))
    with pytest.raises(DiskFullError) as raised:
        write(target)
    monkeypatch.undo()
    error = raised.value
    assert error.mount == mount_point(tmp_path) and os.path.ismount(error.mount)
    assert str(error).splitlines()[0] == (
        f"the filesystem mounted at {error.mount} is full (writing {target})")
    assert f"fix: free space on {error.mount}" in str(error)
    assert isinstance(error.__cause__, OSError) and error.__cause__.errno == errno.ENOSPC
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # no temp file left


def test_the_file_size_limit_is_named_as_such_not_as_a_full_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(harness.io.os, "fsync", failing(errno.EFBIG))
    with pytest.raises(DiskFullError, match=r"file-size limit of this process \(ulimit -f\)"):
        write_text(tmp_path / "big.txt", "x")


def test_other_write_errors_pass_through_unchanged(tmp_path, monkeypatch):
    monkeypatch.setattr(harness.io.os, "replace", failing(errno.EACCES))
    with pytest.raises(PermissionError):
        write_text(tmp_path / "x.txt", "x")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_mount_point_of_a_path_not_yet_created(tmp_path):
    assert mount_point(tmp_path / "not" / "yet") == mount_point(tmp_path)
    assert mount_point(tmp_path / "x").is_absolute()


def test_write_json_replaces_whole_file(tmp_path):
    target = tmp_path / "m.json"
    write_json(target, {"runs": list(range(100))})
    write_json(target, {"runs": []})
    assert json.loads(target.read_text()) == {"runs": []}


def test_event_log_appends_typed_lines_and_reader_skips_torn_tail(tmp_path):
    path = tmp_path / "events.jsonl"
    seen = []
    log = EventLog(path, on_event=seen.append)
    log.emit(PhaseEvent(phase="load"))
    log.emit(ProgressEvent(done=1, total=2))
    log.close()
    log.close()  # idempotent
    log.emit(PhaseEvent(phase="late"))  # after close: dropped, not an error
    with open(path, "a") as handle:
        handle.write('{"event": "tor')
    events = read_events(path)
    assert [type(e) for e in events] == [PhaseEvent, ProgressEvent]
    assert events[1].done == 1 and 0 < events[0].t_s <= events[1].t_s
    assert events[0].time > 1.7e9  # stamped with the wall clock (epoch s)
    assert seen == events  # the callback got the same stamped events
    first = json.loads(path.read_text().splitlines()[0])
    assert next(iter(first)) == "event" and first["phase"] == "load"


def test_reader_keeps_an_unknown_event_kind(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"event": "gpu_on_fire", "time": 1, "t_s": 2, "celsius": 900}\n'
                    '{"event": "progress", "done": "many"}\n'
                    '{"event": "phase", "phase": "load", "from_the_future": 1}\n')
    unknown, misshapen, phase = read_events(path)
    assert isinstance(unknown, UnknownEvent) and unknown.event == "gpu_on_fire"
    assert unknown.model_extra == {"celsius": 900}
    assert isinstance(misshapen, UnknownEvent) and "not a v1 progress event" in misshapen.note
    assert phase == PhaseEvent(phase="load")


def test_a_callback_that_raises_does_not_stop_the_log(tmp_path):
    def broken(event):
        raise ValueError("caller bug")

    log = EventLog(tmp_path / "events.jsonl", on_event=broken)
    log.emit(PhaseEvent(phase="load"))
    log.emit(PhaseEvent(phase="measure"))
    log.close()
    assert [e.phase for e in read_events(tmp_path / "events.jsonl")] == ["load", "measure"]
