#!/usr/bin/env bash
# Build one llem image: llem/BACKEND:<harness version>, also tagged llem/BACKEND:latest.
#
# Usage: images/build.sh BACKEND [--base IMAGE] [--extras LIST] [--refresh] [--force]
#   BACKEND       cpu | vllm-cpu | pytorch | vllm | tensorrt
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
#   4. cpu only, the dependency image llem/build-cache:cpu-deps-FINGERPRINT (fingerprint of
#      requirements.lock, the wheel list, images/common/install-deps.sh and the base image id):
#      when it does not exist, a container of the base image with no network and deps/
#      bind-mounted read-only runs install-deps.sh, and is committed and removed. The wheels
#      never enter a layer and are never sent to the engine as a build context.
#   5. docker build images/.wheels/BACKEND (cpu: deps/ left out by the context's .dockerignore)
#      with images/BACKEND/Dockerfile plus one LABEL line (the labels and llem.build_inputs) as
#      its Dockerfile, skipped when the image already carries the same llem.build_inputs
#      fingerprint (Dockerfile, harness files, dependency image id, base image id, labels)
#   6. remove what this script made obsolete: dangling images with our labels, and dependency
#      images of other fingerprints (their layers stay while an older image uses them)
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
    vllm-cpu) backend_dist=vllm-cpu ;;
    vllm) backend_dist=vllm ;;
    tensorrt) backend_dist=tensorrt_llm ;;
    "") usage >&2; exit 2 ;;
    *) echo "build.sh: unknown backend '$backend' (cpu, vllm-cpu, pytorch, vllm, tensorrt)" >&2
       exit 2 ;;
esac

[[ -z $extras || $backend == pytorch || $backend == vllm || $backend == tensorrt ]] || {
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
        if [[ $backend == cpu || $backend == vllm-cpu ]]; then
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
    if [[ -d $context_dir/deps ]]; then
        # requirements.lock, and nodeps.lock where the image has one (vllm-cpu)
        { cat "$context_dir/deps/requirements.lock"
          cat "$context_dir/deps/nodeps.lock" 2>/dev/null || true; } |
            sed -n "s/^${backend_dist}==//p"
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
        [[ -z $deps_image ]] || "$DOCKER" image inspect --format '{{.Id}}' "$deps_image"
        printf '%s\n' "${labels[@]}" "$extras"
    } | sha256sum | cut -c1-16
}

# The modules a dependency image must import once installed (images with deps/ only).
deps_modules() {
    case "$1" in
        cpu) echo pyarrow pydantic scipy torch transformers ;;
        vllm-cpu) echo pyarrow pydantic scipy torch transformers vllm ;;
    esac
}

deps_fingerprint() {
    # $1 image, $2 its context directory, $3 the image its dependency image starts from.
    {
        cat "$2/deps/requirements.lock" "$2/deps/wheels.txt" "$images_dir/common/install-deps.sh"
        cat "$2/deps/nodeps.lock" 2>/dev/null || true
        deps_modules "$1"
        # How the image is made (the container's and the commit's options) is an input too.
        declare -f ensure_deps_image
        "$DOCKER" image inspect --format '{{.Id}}' "$3"
    } | sha256sum | cut -c1-16
}

ensure_deps_image() {
    # Step 4 for image $1 (context $2), on image $3: sets deps_image (empty: no deps/).
    local name=$1 context=$2 from=$3
    deps_image=""
    [[ -d $context/deps ]] || return 0
    deps_image=llem/build-cache:$name-deps-$(deps_fingerprint "$name" "$context" "$from")
    printf '%s\n' deps >"$context/.dockerignore"
    if image_exists "$deps_image"; then
        log "dependency image $deps_image is up to date"
        return 0
    fi
    log "installing $(grep -vc '^#' "$context/deps/wheels.txt") wheels into $deps_image \
(a container of $from, no network)"
    deps_container=llem-build-${deps_image##*:}
    "$DOCKER" rm --force "$deps_container" >/dev/null 2>&1 || true  # left by a killed build
    trap 'remove_deps_container' EXIT
    # An interrupt must stop the install: the CLI in the foreground would proxy Ctrl-C to the
    # container's PID 1 (sh, which ignores it) and bash would run no trap before the install
    # ends. In the background, `wait` returns at once on a signal, the trap exits and the EXIT
    # trap removes the container (which ends the CLI).
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
    # The base images have no entrypoint (docker import, and commits of it): the command is sh.
    # shellcheck disable=SC2046 # deps_modules: a list of module names, one word each
    "$DOCKER" run --interactive --name "$deps_container" --network none \
        --volume "$context/deps:/mnt:ro" "$from" /bin/sh -s $(deps_modules "$name") \
        <"$images_dir/common/install-deps.sh" >&2 &
    wait "$!" || die "installing the dependencies into $deps_image failed (output above)"
    "$DOCKER" commit --change 'CMD ["/bin/bash"]' "$deps_container" "$deps_image" >/dev/null ||
        die "could not commit $deps_container as $deps_image"
    remove_deps_container
    trap - EXIT INT TERM HUP
}

remove_deps_container() {
    "$DOCKER" rm --force "$deps_container" >/dev/null 2>&1 || true
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
        ${deps_image:+--build-arg "DEPS_IMAGE=$deps_image"} \
        ${extras:+--build-arg "LLEM_EXTRAS=$extras"} \
        --tag "$image:$harness_version" \
        --tag "$image:latest" \
        "$context_dir" 2>&1 | tee "$log" >&2; then
        rm -f "$log"
        die "docker build of $image failed (output above)"
    fi
    rm -f "$log"
    remove_obsolete_images
}

remove_obsolete_images() {
    # Earlier builds of this image, which lost their tags; the dependency stage that builds
    # before the dependency image kept (llem.stage label, tag llem/build-cache:BACKEND-deps);
    # dependency images of other fingerprints. An image still used by another keeps its layers.
    local tag
    "$DOCKER" image prune --force --filter "label=llem.image=$backend" >/dev/null
    while read -r tag; do
        [[ $tag == "$backend-deps"* && llem/build-cache:$tag != "$deps_image" ]] || continue
        "$DOCKER" rmi "llem/build-cache:$tag" >/dev/null 2>&1 ||
            log "warning: could not remove the obsolete llem/build-cache:$tag"
    done < <("$DOCKER" image ls --format '{{.Tag}}' llem/build-cache)
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
deps_from=$base_image
if [[ -f $images_dir/$backend/deps-parent ]]; then
    # This image's dependencies go on top of another image's dependency image (vllm-cpu on
    # cpu): that one first, from the same base.
    parent=$(<"$images_dir/$backend/deps-parent")
    "$images_dir/wheels.sh" "$parent" "${wheels_args[@]}"
    ensure_deps_image "$parent" "$images_dir/.wheels/$parent" "$base_image"
    deps_from=$deps_image
fi
"$images_dir/wheels.sh" "$backend" "${wheels_args[@]}"
ensure_deps_image "$backend" "$context_dir" "$deps_from"
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
