import json

import pytest

from harness.io import EventLog, atomic_open, read_events, write_json


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


def test_event_log_appends_lines_and_reader_skips_torn_tail(tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    log.emit("phase", phase="load")
    log.emit("progress", done=1, total=2)
    log.close()
    log.close()  # idempotent
    with open(path, "a") as handle:
        handle.write('{"event": "tor')
    events = read_events(path)
    assert [e["event"] for e in events] == ["phase", "progress"]
    assert events[1]["done"] == 1 and events[0]["t_s"] <= events[1]["t_s"]
