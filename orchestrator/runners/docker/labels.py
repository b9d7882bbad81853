"""Every Docker label llem reads or writes, in one place.

Image labels are written by the recipes in ``images/`` (``LABEL llem.image=...``); container
labels are written by :mod:`orchestrator.runners.docker.plan` and read back to find a session's
containers and the orphans of dead sessions.
"""

from __future__ import annotations

# Images (set by images/*/Dockerfile).
IMAGE = "llem.image"
"""The image flavour: cpu, pytorch, vllm or tensorrt. Its presence marks a llem image."""
IMAGE_BACKEND = "llem.backend"
IMAGE_BACKEND_VERSION = "llem.backend_version"
IMAGE_HARNESS_VERSION = "llem.harness_version"
IMAGE_DEVICE = "llem.device"
"""cpu or cuda."""

# Containers (set by plan.py).
LABEL_SESSION = "llem.session"
"""The orchestrator session that owns the container; every llem container has it."""
LABEL_PID = "llem.session.pid"
LABEL_PID_START = "llem.session.pid_start"
LABEL_HOST = "llem.session.host"
LABEL_STUDY = "llem.study"
LABEL_RUN = "llem.run"
