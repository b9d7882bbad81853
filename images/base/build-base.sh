#!/usr/bin/env bash
# Build llem/base:bookworm, a minimal Debian bookworm image, without any container registry.
#
# The root file system is made with debootstrap (minbase variant plus python3, python3-venv,
# ca-certificates, libnuma1, which vLLM's CPU kernels load, and g++ with python3-dev, which
# torch.compile's CPU code generation needs (a compiler and Python.h): vLLM's CPU build
# compiles its model unless enforce_eager), trimmed, and loaded with `docker import`. Only a
# Debian mirror is needed.
#
# Usage: images/base/build-base.sh [--force] [--refresh] [--tag IMAGE]
#   --force     rebuild even if the image already exists (reuses the cached packages)
#   --refresh   download the packages again instead of using the cached package tarball
#   --tag IMAGE the image to create (default llem/base:bookworm)
#
# Environment:
#   LLEM_CACHE_DIR      cache root (default ~/.cache/llem); packages go to <root>/base/
#   LLEM_DEBIAN_MIRROR  Debian mirror URL (default: the host's, from its apt sources)
#   PYTHON              host interpreter that reads the apt sources (default python3)
#   DOCKER              docker CLI to call (default docker)
#
# Needs root (debootstrap chroots and creates device nodes) and a reachable Docker engine.
set -euo pipefail

SUITE=bookworm
ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
INCLUDE=python3,python3-venv,python3-dev,ca-certificates,libnuma1,g++
MIRROR=${LLEM_DEBIAN_MIRROR:-}
PYTHON=${PYTHON:-python3}
CACHE_DIR=${LLEM_CACHE_DIR:-$HOME/.cache/llem}/base
DOCKER=${DOCKER:-docker}
TAG=llem/base:${SUITE}
FORCE=0
REFRESH=0

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --force) FORCE=1 ;;
        --refresh) REFRESH=1; FORCE=1 ;;
        --tag) TAG=${2:?--tag needs an image name}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "build-base.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

log() { printf '[build-base] %s\n' "$*" >&2; }

if [[ $FORCE -eq 0 ]] && "$DOCKER" image inspect "$TAG" >/dev/null 2>&1; then
    # An image made with another package list (llem.base.packages) is made again.
    packages=$("$DOCKER" image inspect --format '{{index .Config.Labels "llem.base.packages"}}' \
        "$TAG")
    if [[ $packages == "$INCLUDE" ]]; then
        log "$TAG already exists; nothing to do (use --force to rebuild)"
        exit 0
    fi
    log "$TAG was made with packages '${packages:-?}'; making it again with '$INCLUDE'"
fi

if [[ -z $MIRROR ]]; then
    # Exit status 2 and the message (naming LLEM_DEBIAN_MIRROR) come from the script.
    MIRROR=$("$PYTHON" "$(dirname "${BASH_SOURCE[0]}")/debian_mirror.py" --suite "$SUITE") ||
        exit $?
    log "Debian mirror from this host's apt sources: $MIRROR"
fi

if [[ $(id -u) -ne 0 ]]; then
    log "debootstrap needs root: run this script with sudo"
    exit 1
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        debootstrap >/dev/null
fi

# The package tarball depends on what is installed and from where; a change to any of these
# must not reuse an old tarball.
cache_key=$(printf '%s\n' "$SUITE" "$ARCH" "$INCLUDE" "$MIRROR" | sha256sum | cut -c1-12)
packages_tarball=$CACHE_DIR/debootstrap-$SUITE-$ARCH-$cache_key.tar.gz
mkdir -p "$CACHE_DIR"

work_dir=$(mktemp -d "${TMPDIR:-/tmp}/llem-base.XXXXXX")
root=$work_dir/root
cleanup() {
    # debootstrap may leave /proc or /sys mounted inside the root when it fails half-way.
    for mount_point in "$root/proc" "$root/sys" "$root/dev/pts"; do
        if mountpoint -q "$mount_point" 2>/dev/null; then umount -l "$mount_point" || true; fi
    done
    rm -rf --one-file-system "$work_dir"
}
trap cleanup EXIT

debootstrap_args=(--variant=minbase --include="$INCLUDE" --arch="$ARCH")

if [[ $REFRESH -eq 1 || ! -s $packages_tarball ]]; then
    log "downloading packages from $MIRROR into $packages_tarball"
    partial=$packages_tarball.partial
    rm -f "$partial"
    debootstrap "${debootstrap_args[@]}" --make-tarball="$partial" \
        "$SUITE" "$work_dir/download" "$MIRROR" >&2
    mv "$partial" "$packages_tarball"
    rm -rf --one-file-system "$work_dir/download"
else
    log "using cached packages $packages_tarball"
fi

log "installing the root file system"
debootstrap "${debootstrap_args[@]}" --unpack-tarball="$packages_tarball" \
    "$SUITE" "$root" "$MIRROR" >&2

log "trimming"
# Future apt-get installs in derived images skip documentation too.
cat >"$root/etc/dpkg/dpkg.cfg.d/01-llem-nodoc" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
EOF
cat >"$root/etc/apt/apt.conf.d/01-llem-slim" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
EOF
find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/lintian
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
    "$root"/var/log/* "$root"/tmp/* "$root"/var/tmp/*
# The standard library's bytecode stays: containers run as a uid that cannot write it, and
# recompiling it in memory at every start would add to each run's overhead.
# Machine id, hostname and DNS come from the container runtime.
: >"$root/etc/machine-id"
rm -f "$root/etc/hostname" "$root/etc/resolv.conf"

replaced_image=$("$DOCKER" image inspect --format '{{.Id}}' "$TAG" 2>/dev/null || true)
python_version=$(chroot "$root" python3 -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
log "loading $TAG into the engine (python $python_version)"
# Images built on this one replace llem.base with the base image they name; the llem.base.*
# labels carry over and keep the recipe, suite and Python visible there.
tar --numeric-owner -C "$root" -c . | "$DOCKER" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --change 'LABEL llem.base=debootstrap' \
    --change 'LABEL llem.base.recipe=debootstrap' \
    --change "LABEL llem.base.suite=$SUITE" \
    --change "LABEL llem.base.packages=$INCLUDE" \
    --change "LABEL llem.base.python=$python_version" \
    --change "LABEL llem.base.created=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --change 'LABEL org.opencontainers.image.title=llem-base' \
    - "$TAG" >/dev/null

# A rebuild leaves the previous image untagged; drop it unless images built on it still exist.
new_image=$("$DOCKER" image inspect --format '{{.Id}}' "$TAG")
if [[ -n $replaced_image && $replaced_image != "$new_image" ]]; then
    "$DOCKER" rmi "$replaced_image" >/dev/null 2>&1 || true
fi
size_bytes=$("$DOCKER" image inspect --format '{{.Size}}' "$TAG")
log "built $TAG ($((size_bytes / 1000000)) MB)"
