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
set -eu
python3 -m venv /opt/llem
/opt/llem/bin/pip install --no-index --no-cache-dir --disable-pip-version-check \
    --find-links /mnt -r /mnt/requirements.lock
PYTHONDONTWRITEBYTECODE=1 /opt/llem/bin/python -c \
    'import importlib, sys; [importlib.import_module(name) for name in sys.argv[1:]]' "$@"
