"""images/build.sh driven end to end against a fake docker CLI, in a copy of images/.

The fake keeps images as files and logs every call. Its ``run`` behaves like the real CLI
running ``/bin/sh -s`` as a container's PID 1: an interrupt (SIGINT) changes nothing, because
the CLI proxies it to the container, where PID 1 ignores it; the container runs on until it
finishes or is removed (``rm --force``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"

FAKE_DOCKER = r'''
import json, os, signal, sys, time, uuid
from pathlib import Path

state = Path(os.environ["FAKE_DOCKER_STATE"])
images = state / "images"
removed = state / "removed"
images.mkdir(parents=True, exist_ok=True)
removed.mkdir(exist_ok=True)
args = sys.argv[1:]
with open(state / "calls.log", "a") as log:
    log.write(json.dumps(args) + "\n")


def path(name):
    return images / name.replace("/", "_").replace(":", "=")


def save(name, labels=None):
    path(name).write_text(json.dumps({"id": "sha256:" + uuid.uuid4().hex, "labels": labels or {}}))


def option(name):
    return args[args.index(name) + 1] if name in args else None


if args[0] == "version":
    print("20.10.0")
elif args[:2] == ["image", "inspect"]:
    image = path(args[-1])
    if not image.exists():
        sys.exit(1)
    data = json.loads(image.read_text())
    fmt = option("--format") or ""
    if ".Id" in fmt:
        print(data["id"])
    elif ".Size" in fmt:
        print(1000000)
    elif "llem.build_inputs" in fmt:
        print(data["labels"].get("llem.build_inputs", ""))
    else:
        print("")
elif args[:2] == ["image", "ls"]:
    for image in images.iterdir():
        if image.name.startswith("llem_build-cache="):
            print(image.name.split("=", 1)[1])
elif args[:2] == ["image", "prune"]:
    pass
elif args[0] == "rm":
    (removed / args[-1]).touch()
elif args[0] == "rmi":
    path(args[-1]).unlink(missing_ok=True)
elif args[0] == "tag":
    path(args[2]).write_text(path(args[1]).read_text())
elif args[0] == "run":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # proxied to PID 1, which ignores it
    name = option("--name")
    (removed / name).unlink(missing_ok=True)
    sys.stdin.read()
    deadline = time.monotonic() + float(os.environ.get("FAKE_RUN_SECONDS", "0"))
    while time.monotonic() < deadline:
        if (removed / name).exists():
            sys.exit(137)  # killed by rm --force
        time.sleep(0.05)
    (state / "containers").mkdir(exist_ok=True)
    (state / "containers" / name).touch()
elif args[0] == "commit":
    container, image = args[-2], args[-1]
    if (removed / container).exists() or not (state / "containers" / container).exists():
        print(f"Error: No such container: {container}", file=sys.stderr)
        sys.exit(1)
    save(image)
elif args[0] == "build":
    dockerfile = sys.stdin.read()
    inputs = dockerfile.split('"llem.build_inputs"="')[1].split('"')[0]
    for index, arg in enumerate(args):
        if arg == "--tag":
            save(args[index + 1], {"llem.build_inputs": inputs})
else:
    print(f"fake docker: unexpected {args}", file=sys.stderr)
    sys.exit(3)
'''

FAKE_WHEELS = r'''#!/usr/bin/env bash
set -euo pipefail
context=$(cd "$(dirname "$0")" && pwd)/.wheels/$1
mkdir -p "$context/harness" "$context/deps"
echo wheel >"$context/harness/llem-0.1.0-py3-none-any.whl"
echo install >"$context/harness/install.sh"
printf '# lock\ntorch==2.0.0\n' >"$context/deps/requirements.lock"
echo torch-2.0.0-cp311-cp311-manylinux_2_17_x86_64.whl >"$context/deps/wheels.txt"
'''


def sandbox(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of images/ whose wheels.sh and build-base.sh are stubs, and the fake docker."""
    images = tmp_path / "images"
    for relative in ("build.sh", "common/labels.sh", "common/install-deps.sh", "cpu/Dockerfile"):
        (images / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(IMAGES / relative, images / relative)
    (images / "wheels.sh").write_text(FAKE_WHEELS)
    (images / "base").mkdir()
    (images / "base" / "build-base.sh").write_text("#!/usr/bin/env bash\nexit 0\n")
    for script in ("wheels.sh", "base/build-base.sh"):
        (images / script).chmod(0o755)
    docker = tmp_path / "docker"
    docker.write_text(f"#!{sys.executable}\n{FAKE_DOCKER}")
    docker.chmod(0o755)
    state = tmp_path / "state"
    (state / "images").mkdir(parents=True)
    (state / "images" / "llem_base=bookworm").write_text(
        '{"id": "sha256:base", "labels": {}}')
    env = {**os.environ, "DOCKER": str(docker), "FAKE_DOCKER_STATE": str(state),
           "LLEM_CACHE_DIR": str(tmp_path / "cache")}
    return images, env


def calls(env: dict[str, str]) -> list[list[str]]:
    log = Path(env["FAKE_DOCKER_STATE"]) / "calls.log"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def deps_images(env: dict[str, str]) -> list[str]:
    return [call[-1] for call in calls(env) if call[0] == "commit"]


def test_fake_build_makes_the_dependency_image_then_the_image(tmp_path: Path) -> None:
    images, env = sandbox(tmp_path)
    done = subprocess.run(["bash", str(images / "build.sh"), "cpu"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    commits = deps_images(env)
    assert len(commits) == 1 and commits[0].startswith("llem/build-cache:cpu-deps-")
    builds = [call for call in calls(env) if call[0] == "build"]
    assert len(builds) == 1 and f"DEPS_IMAGE={commits[0]}" in builds[0]


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_an_interrupt_during_the_dependency_install_stops_the_build(tmp_path: Path) -> None:
    # Ctrl-C in the terminal: SIGINT to the whole process group while the wheels install.
    images, env = sandbox(tmp_path)
    env["FAKE_RUN_SECONDS"] = "30"
    # As a terminal starts it: SIGINT at its default. A shell started with SIGINT ignored (as
    # everything below a non-interactive shell's `cmd &` is) cannot trap it, and no Ctrl-C
    # reaches such a process anyway.
    build = subprocess.Popen(["bash", str(images / "build.sh"), "cpu"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True, preexec_fn=_sigint_default)
    try:
        deadline = time.monotonic() + 20
        while not any(call[0] == "run" for call in calls(env)):
            assert time.monotonic() < deadline and build.poll() is None, build.stderr
            time.sleep(0.05)
        time.sleep(0.3)
        started = time.monotonic()
        os.killpg(build.pid, signal.SIGINT)
        build.wait(timeout=60)
        waited = time.monotonic() - started
    finally:
        if build.poll() is None:
            os.killpg(build.pid, signal.SIGKILL)
        build.wait()
    assert build.returncode != 0
    assert waited < 10  # not after the whole install
    assert deps_images(env) == []  # nothing committed, no build went on
    after_run = calls(env)[[call[0] for call in calls(env)].index("run"):]
    assert [call[:2] for call in after_run if call[0] == "rm"] == [["rm", "--force"]]


def test_the_dependency_image_name_covers_how_it_is_made(tmp_path: Path) -> None:
    # A change to the container or commit options of the dependency image (here the committed
    # CMD) must name another image: an existing one was made the old way.
    images, env = sandbox(tmp_path)
    first = subprocess.run(["bash", str(images / "build.sh"), "cpu"], env=env,
                           capture_output=True, text=True, timeout=60, check=False)
    assert first.returncode == 0, first.stderr
    script = (images / "build.sh").read_text()
    assert "--change 'CMD [\"/bin/bash\"]'" in script
    (images / "build.sh").write_text(script.replace("--change 'CMD [\"/bin/bash\"]'",
                                                    "--change 'CMD [\"/bin/sh\"]'"))
    second = subprocess.run(["bash", str(images / "build.sh"), "cpu"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert second.returncode == 0, second.stderr
    commits = deps_images(env)
    assert len(commits) == 2 and commits[0] != commits[1], second.stderr
