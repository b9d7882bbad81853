#!/usr/bin/env bash
# Build one llem image: llem/BACKEND:<harness version>, also tagged llem/BACKEND:latest.
#
# Usage: images/build.sh BACKEND [--base IMAGE] [--extras LIST] [--refresh] [--force]
#   BACKEND       cpu | pytorch | vllm | tensorrt
#   --base IMAGE  base image (default: the BASE_IMAGE default in images/BACKEND/Dockerfile;
#                 for cpu, llem/base:bookworm, built by images/base/build-base.sh if missing)
#   --extras LIST llem extras to install too, comma-separated (zeus, codecarbon): the
#                 alternative energy sources; GPU images only
#   --refresh     resolve the cpu image's dependencies again (newer releases)
#   --force       run `docker build` even if the image is up to date (layer cache still used)
#
# What it does, per image (plain steps, so that a Python caller can follow them through the
# Docker SDK):
#   1. base: cpu: llem/base:bookworm (built locally from Debian packages, no registry);
#            others: the release image, pulled if it is not loaded already
#   2. context: images/wheels.sh BACKEND -> images/.wheels/BACKEND/
#   3. labels (images/common/labels.sh, the same recipe for every image): harness version from
#      the llem wheel's file name; backend version from requirements.lock (cpu: torch) or from
#      the base image's package metadata (others)
#   4. docker build images/.wheels/BACKEND with images/BACKEND/Dockerfile plus one LABEL line
#      (the labels and llem.build_inputs) as its Dockerfile, skipped when the image already
#      carries the same llem.build_inputs fingerprint (Dockerfile, wheels, install script, base
#      image id, labels); otherwise Docker's layer cache makes an unchanged dependency layer free
#   5. tag the cpu dependency stage llem/build-cache:cpu-deps (kept as cache), and remove the
#      images this script made obsolete (dangling, with our labels)
#
# Environment: DOCKER (default docker), LLEM_CACHE_DIR (where the build lock lives, default
# ~/.cache/llem), and those of wheels.sh and base/build-base.sh.
set -euo pipefail

images_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DOCKER=${DOCKER:-docker}
PYTHON=${PYTHON:-python3}
# shellcheck source=images/common/labels.sh
source "$images_dir/common/labels.sh"

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
log() { printf '[build] %s\n' "$*" >&2; }
die() { printf '[build] error: %s\n' "$*" >&2; exit 1; }

backend=""
base_image=""
wheels_args=()
force=0
extras=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --base) base_image=${2:?--base needs an image}; shift ;;
        --extras) extras=${2:?--extras needs a list, e.g. zeus,codecarbon}; shift ;;
        --refresh) wheels_args+=(--refresh) ;;
        --force) force=1 ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "build.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
        *) [[ -z $backend ]] || { echo "build.sh: one BACKEND only" >&2; exit 2; }; backend=$1 ;;
    esac
    shift
done

# The distribution whose version labels the image (llem.backend_version).
case "$backend" in
    cpu|pytorch) backend_dist=torch ;;
    vllm) backend_dist=vllm ;;
    tensorrt) backend_dist=tensorrt_llm ;;
    "") usage >&2; exit 2 ;;
    *) echo "build.sh: unknown backend '$backend' (cpu, pytorch, vllm, tensorrt)" >&2; exit 2 ;;
esac

[[ -z $extras || $backend != cpu ]] || {
    echo "build.sh: --extras applies to the GPU images (pytorch, vllm, tensorrt)" >&2; exit 2; }
[[ $extras =~ ^[a-z0-9,_-]*$ ]] || { echo "build.sh: bad --extras '$extras'" >&2; exit 2; }

dockerfile=$images_dir/$backend/Dockerfile
context_dir=$images_dir/.wheels/$backend
image=llem/$backend

"$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
    die "no Docker engine reachable ('$DOCKER version' failed); start it or set DOCKER_HOST"

default_base_image() {
    sed -n 's/^ARG BASE_IMAGE=//p' "$dockerfile" | head -n1
}

image_exists() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

ensure_base() {
    if [[ -z $base_image ]]; then
        base_image=$(default_base_image)
        if [[ $backend == cpu ]]; then
            "$images_dir/base/build-base.sh" --tag "$base_image"
            return
        fi
    fi
    if ! image_exists "$base_image"; then
        log "base image $base_image is not loaded; pulling it"
        "$DOCKER" pull "$base_image" >&2 || die "base image $base_image is neither loaded nor \
pullable: load it with 'docker load -i FILE' or pass --base IMAGE"
    fi
}

backend_version() {
    if [[ $backend == cpu ]]; then
        sed -n "s/^${backend_dist}==//p" "$context_dir/deps/requirements.lock"
        return
    fi
    # Package metadata only: importing vllm or tensorrt_llm would need a GPU.
    "$DOCKER" run --rm --network none --entrypoint python3 "$base_image" -c \
        "import importlib.metadata as m; print(m.version('$backend_dist'))" 2>/dev/null ||
        { log "could not read the $backend_dist version from $base_image"; echo unknown; }
}

build_inputs_fingerprint() {
    # Everything that decides the image's content; equal fingerprints mean nothing to rebuild.
    {
        sha256sum "$dockerfile" "$context_dir"/harness/* | cut -d' ' -f1
        [[ ! -d $context_dir/deps ]] || cat "$context_dir/deps/requirements.lock" \
            "$context_dir/deps/wheels.txt"
        "$DOCKER" image inspect --format '{{.Id}}' "$base_image"
        printf '%s\n' "${labels[@]}" "$extras"
    } | sha256sum | cut -c1-16
}

image_label() {
    "$DOCKER" image inspect --format "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null || true
}

build_image() {
    local log
    log=$(mktemp)
    # The Dockerfiles need no BuildKit feature: the legacy builder, all that an engine without
    # the buildx plugin offers, builds them too. The labels come last, so that their change
    # (llem.build_inputs changes with every input) leaves every other layer cached.
    if ! { cat "$dockerfile"; echo; label_instruction "${labels[@]}" \
            "llem.build_inputs=$fingerprint"; } | "$DOCKER" build \
        --file - \
        --build-arg "BASE_IMAGE=$base_image" \
        ${extras:+--build-arg "LLEM_EXTRAS=$extras"} \
        --tag "$image:$harness_version" \
        --tag "$image:latest" \
        "$context_dir" 2>&1 | tee "$log" >&2; then
        rm -f "$log"
        die "docker build of $image failed (output above)"
    fi
    keep_dependency_stage "$log"
    rm -f "$log"
    remove_obsolete_images
}

keep_dependency_stage() {
    # The legacy builder leaves the cpu dependency stage (6 GB) as an untagged image: Docker's
    # cache for the next build, which any `docker image prune` would delete. Tagging it keeps
    # it, and marks every other one as obsolete. Its id is the last one printed before the
    # second FROM; BuildKit prints no ids and keeps its cache elsewhere, so nothing to do there.
    [[ -d $context_dir/deps ]] || return 0
    local deps_id
    deps_id=$(awk '/^Step [0-9]+\/[0-9]+ : FROM / { if (seen++) { print id; exit } }
                   /^ ---> [0-9a-f]+$/ { id = $2 }' "$1")
    [[ -z $deps_id ]] || "$DOCKER" tag "$deps_id" "llem/build-cache:$backend-deps" ||
        log "warning: the dependency stage $deps_id is gone (removed by another build?); not kept"
}

remove_obsolete_images() {
    # Earlier builds of this image and of its dependency stage, which lost their tags.
    "$DOCKER" image prune --force --filter "label=llem.image=$backend" >/dev/null
    "$DOCKER" image prune --force --filter "label=llem.stage=$backend-deps" >/dev/null
}

# Two builds at once (say, a test session and a user) would rewrite each other's context, and
# builds from two checkouts of llem would replace each other's tags and prune each other's
# dependency stage: one lock per host user, beside the base image's package cache.
lock_file=${LLEM_CACHE_DIR:-$HOME/.cache/llem}/image-build.lock
mkdir -p "$images_dir/.wheels" "$(dirname "$lock_file")"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$lock_file"
    flock 9 || die "could not lock $lock_file"
fi

ensure_base
"$images_dir/wheels.sh" "$backend" "${wheels_args[@]}"
llem_wheel=$(basename "$(ls "$context_dir"/harness/llem-*.whl)")
harness_version=$(echo "$llem_wheel" | cut -d- -f2)
backend_version=$(backend_version)
mapfile -t labels < <(image_labels "$backend" "$base_image" "$backend_version" "$harness_version")
fingerprint=$(build_inputs_fingerprint)

built_from=$(image_label "$image:$harness_version" llem.build_inputs)
if [[ $force -eq 0 && $built_from == "$fingerprint" ]]; then
    "$DOCKER" tag "$image:$harness_version" "$image:latest"
    log "$image:$harness_version is up to date (--force to rebuild)"
else
    log "building $image:$harness_version from $base_image ($backend_dist $backend_version)"
    build_image
fi
size_bytes=$("$DOCKER" image inspect --format '{{.Size}}' "$image:$harness_version")
log "$image:$harness_version and $image:latest ready ($((size_bytes / 1000000)) MB)"
