"""Start-up and liveness helpers shared by the scheduler and detokenizer child processes.

The main process (launch.py) owns shutdown: children ignore SIGINT (a Ctrl-C reaches the
whole process group, and the parent stops them in order) and exit on their own when the
parent disappears, so a killed server never leaves orphans holding memory.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

LOG_FORMAT = "%(asctime)s [%(processName)s] %(levelname)s %(name)s: %(message)s"


def setup_child(log_level: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: exit_now(0))
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT, force=True)


def exit_now(code: int) -> None:
    """Exit at once. A normal interpreter exit can hang in zmq context teardown or torch's
    thread pools, and a child has nothing to flush except its log."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def parent_is_gone(parent_pid: int) -> bool:
    """True once the process that started us has exited (we were re-parented)."""
    return os.getppid() != parent_pid
