"""Child processes that end with the process that started them.

Linux's ``prctl(PR_SET_PDEATHSIG)`` makes the kernel signal a child when its parent dies. The
harness uses it for vLLM's OpenAI server (SIGTERM: the server then shuts its engine down), the
local runner for each harness it starts (SIGKILL).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def signalled_with_parent(signum: signal.Signals) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the kernel send ``signum`` to the child when we die.

    ``prctl`` is resolved here, in the parent, so the child makes one system call between fork
    and exec (no import, no lock of ours: safe beside other threads). The signal follows the
    death of the *thread* that started the child. A child whose parent died before the request
    took effect exits at once. None where the call does not exist (not Linux).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    number = int(signum)
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, number, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return preexec
