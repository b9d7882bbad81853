"""`--json` is machine-readable on every path: an error is a JSON object on stdout too.

`llem` runs as a subprocess, as a script would call it; no case reaches a runner, so no Docker
and no model are needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from llem_testkit.cli import llem, tree_digest

GOOD = "model: m\nbackend: pytorch\n"
MALFORMED = "model: m\nbackend: [pytorch\n"

# case: (arguments, whether the error carries a fix); every case is bad input (exit code 2).
# A usage error's fix is click's hint ("Try 'llem run --help' for help.").
CASES: dict[str, tuple[list[str], bool]] = {
    "malformed_study": (["run", "bad.yaml"], True),
    "malformed_study_dry_run": (["run", "bad.yaml", "--dry-run"], True),
    "missing_study_file": (["run", "nope.yaml"], True),
    "missing_resume_dir": (["run", "--resume", "no-such-dir"], True),
    "resume_dir_without_study": (["run", "--resume", "empty"], True),
    "unknown_runner": (["run", "good.yaml", "--runner", "lokal"], True),
    "bad_gpus": (["run", "good.yaml", "--gpus", "x"], True),
    "model_not_cached_offline": (["run", "good.yaml", "--runner", "local", "--offline"], False),
    "option_out_of_range": (["run", "good.yaml", "--cycles", "0"], True),
    "unknown_option": (["run", "good.yaml", "--bogus"], True),
    "cache_list_unknown_option": (["cache", "list", "--bogus"], True),
    # past the preflight (a local model directory), refused when the study directory opens
    "damaged_manifest_on_resume": (["run", "--resume", "earlier", "--runner", "local"], True),
}


def written(root: Path) -> dict[str, str]:
    """Every file under root but a study directory's lock (the subject of the input checks)."""
    return {path: digest for path, digest in tree_digest(root).items()
            if not path.endswith(".llem.lock")}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "bad.yaml").write_text(MALFORMED)
    (tmp_path / "empty").mkdir()
    model = tmp_path / "model"
    model.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (model / name).write_text("{}")
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "study.yaml").write_text(f"model: {model}\nbackend: pytorch\n")
    (earlier / "manifest.json").write_text('{"keep": true}\n')
    return tmp_path


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_error_with_json_is_a_json_object_on_stdout_with_the_same_exit_code(case, workdir):
    args, has_fix = CASES[case]
    before = written(workdir)
    output = ["--output", "out"] if args[0] == "run" else []
    plain = llem(*args, *output, cwd=workdir, timeout=60)
    as_json = llem(*args, *output, "--json", cwd=workdir, timeout=60)
    assert plain.returncode == 2, (plain.stdout, plain.stderr)
    assert plain.stdout == ""
    assert as_json.returncode == plain.returncode, (as_json.stdout, as_json.stderr)
    error = json.loads(as_json.stdout)  # the whole of stdout: one JSON object
    assert isinstance(error, dict) and set(error) == {"error", "exit_code", "fix"}
    assert error["exit_code"] == 2
    assert error["error"] and error["error"].splitlines()[0] in plain.stderr
    assert (error["fix"] is not None) == has_fix
    if has_fix:
        assert error["fix"] in plain.stderr and error["fix"] not in error["error"]
    assert "Traceback" not in as_json.stderr
    assert written(workdir) == before  # nothing written, with or without --json


def test_json_success_output_is_unchanged(workdir):
    done = llem("run", "good.yaml", "--dry-run", "--json", cwd=workdir, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["configurations"] == 1
    done = llem("cache", "list", "--json", "--root", str(workdir / "cache"), cwd=workdir,
                timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


@pytest.mark.parametrize("output", ["good.yaml", "good.yaml/results"])
def test_an_output_root_that_is_a_file_is_bad_input_naming_it(workdir, output):
    # Before: "[Errno 17] File exists: 'good.yaml'" with no fix, once the preflight had run.
    (workdir / "local.yaml").write_text("model: ./model\nbackend: pytorch\n")
    before = written(workdir)
    done = llem("run", "local.yaml", "--runner", "local", "--output", output, "--json",
                cwd=workdir, timeout=60)
    assert done.returncode == 2, (done.stdout, done.stderr)
    error = json.loads(done.stdout)
    assert "good.yaml is a file" in error["error"] and "Errno" not in error["error"]
    assert error["fix"] and "--output" in error["fix"]
    assert written(workdir) == before
