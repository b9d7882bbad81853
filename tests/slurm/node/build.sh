#!/usr/bin/env bash
# Build llem/slurm-node:latest (tests/slurm/node/Dockerfile) on llem/cpu:latest.
#
# The .deb files come from this host's apt sources (`apt-get install --download-only` against
# the base image's own package status, so exactly what the image lacks), cached under
# LLEM_CACHE_DIR (default ~/.cache/llem)/slurm-node/ per package set of the base; `docker build`
# then reuses its layers: a second build takes seconds. Holds the image-build lock that
# images/build.sh holds; removes the earlier builds it leaves untagged.
#
# Usage: tests/slurm/node/build.sh [BASE_IMAGE]
set -euo pipefail

node_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
base=${1:-llem/cpu:latest}
DOCKER=${DOCKER:-docker}
cache=${LLEM_CACHE_DIR:-$HOME/.cache/llem}
packages=(slurmd slurmctld slurm-client munge)
log() { printf '[slurm-node] %s\n' "$*" >&2; }

mkdir -p "$cache"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$cache/image-build.lock"
  flock 9
fi

"$DOCKER" image inspect "$base" >/dev/null 2>&1 ||
  { log "error: $base is not loaded (images/build.sh cpu builds it)"; exit 1; }
# The packages to add depend on what the base image has installed (its dpkg status), not on
# the rest of it: a base rebuilt with another harness reuses the download.
status=$(mktemp)
container=$("$DOCKER" create "$base")
"$DOCKER" cp "$container:/var/lib/dpkg/status" "$status" >/dev/null
"$DOCKER" rm "$container" >/dev/null
context=$cache/slurm-node/$({ sha256sum <"$status"; echo "${packages[*]}"; } |
  sha256sum | cut -c1-16)
if [[ ! -f $context/debs/.complete ]]; then
  log "downloading ${packages[*]} and what $base lacks of their dependencies"
  rm -rf "$context"
  mkdir -p "$context/debs/partial"
  apt-get install -y -qq --download-only --no-install-recommends -o APT::Sandbox::User=root \
    -o Dir::State::status="$status" -o Dir::Cache::archives="$context/debs" \
    "${packages[@]}" >&2
  rm -rf "$context/debs/partial" "$context/debs/lock"
  touch "$context/debs/.complete"
fi
rm -f "$status"
cp "$node_dir/Dockerfile" "$node_dir/entrypoint.sh" "$context/"
printf '%s\n' debs/.complete >"$context/.dockerignore"
"$DOCKER" build --quiet --build-arg "BASE_IMAGE=$base" --tag llem/slurm-node:latest \
  "$context" >/dev/null
"$DOCKER" image prune --force --filter label=llem.image=slurm-node >/dev/null
log "llem/slurm-node:latest ready (on $base)"
