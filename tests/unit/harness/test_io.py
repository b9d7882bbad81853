import json

import pytest

from harness.io import EventLog, atomic_open, read_events, write_json
from harness.schema.events import PhaseEvent, ProgressEvent, UnknownEvent


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path):
    target = tmp_path / "result.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write('{"v": 2')
        raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temp file left


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
