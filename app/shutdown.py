"""Shutdown as a sequence with a deadline: after SIGTERM every process is gone within a bound,
whatever its stores, jobs, sockets or local machines do.

The sequence of each command (docs/architecture.md, "Shutdown"):

    web     stop accepting; open requests and sockets get WEB_DRAIN_SECONDS (uvicorn's
            timeout_graceful_shutdown, which closes idle keep-alive connections and WebSockets
            with 1012 at once), then are cancelled; the resources close (lifespan).
    worker  no job starts any more; running jobs get JOB_COMPLETION_WAIT_SECONDS to finish,
            then are cancelled (arq queues each again: every job is idempotent); the
            cancelled tasks and the health key's deletion get STOP_DEADLINE_SECONDS each
            (workers/supervisor.py: stop_worker); the resources close.
    dev     the web's sequence with DEV_DRAIN_SECONDS, then the worker's (at most
            DEV_WORKER_STOP_SECONDS), then its local machines are destroyed (at most
            DEV_MACHINES_STOP_SECONDS), then the embedded Valkey and Postgres stop.

Each step bounds itself. `ExitDeadline` is the backstop for what no step can bound (a task that
swallows its cancellation, an executor thread stuck in a system call): armed by the first
SIGTERM (or SIGINT, while uvicorn serves), a timer thread ends the process with EXIT_DEADLINE
once the command's deadline has passed. Fly's kill_timeout (fly.toml) is above the web's and
the worker's deadlines, so Fly never SIGKILLs a process that is still shutting down in order;
tests/lint_deploy.sh checks it.
"""

from __future__ import annotations

import os
import sys
import threading
from types import FrameType

import uvicorn

from workers.supervisor import JOB_COMPLETION_WAIT_SECONDS, STOP_DEADLINE_SECONDS

# Closing a process's resources (pools, clients, the batcher): psycopg_pool's close waits
# up to 5 s for its workers; the rest close at once.
RESOURCES_CLOSE_SECONDS = 5.0

WEB_DRAIN_SECONDS = 10
WEB_DEADLINE_SECONDS = WEB_DRAIN_SECONDS + RESOURCES_CLOSE_SECONDS + 5.0

# The supervisor's stop: the jobs' wait, the cancelled jobs, the health key, the resources.
WORKER_STOP_SECONDS = (
    JOB_COMPLETION_WAIT_SECONDS + 2 * STOP_DEADLINE_SECONDS + RESOURCES_CLOSE_SECONDS
)
WORKER_DEADLINE_SECONDS = WORKER_STOP_SECONDS + 5.0

DEV_DRAIN_SECONDS = 5
DEV_WORKER_STOP_SECONDS = WORKER_STOP_SECONDS
# A local machine's stop: SIGTERM to its process group, SIGKILL 2 s later, 2 s more to go.
DEV_MACHINES_STOP_SECONDS = 10.0
# The embedded Valkey gets 5 s before its SIGKILL; Postgres's fast shutdown takes seconds.
EMBEDDED_STORES_STOP_SECONDS = 20.0
DEV_DEADLINE_SECONDS = (
    DEV_DRAIN_SECONDS
    + RESOURCES_CLOSE_SECONDS
    + DEV_WORKER_STOP_SECONDS
    + DEV_MACHINES_STOP_SECONDS
    + EMBEDDED_STORES_STOP_SECONDS
)

# As timeout(1) exits when its command outlived the limit.
EXIT_DEADLINE = 124


class ExitDeadline:
    """Ends the process `seconds` after the first `arm()`, unless it has exited by then."""

    def __init__(self, seconds: float, what: str) -> None:
        self.seconds = seconds
        self.what = what
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def arm(self) -> None:
        # The first signal starts the clock; a second one does not push the deadline back.
        with self._lock:
            if self._timer is not None:
                return
            self._timer = threading.Timer(self.seconds, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def _expire(self) -> None:
        print(
            f"preview-orchestrator: {self.what} still shutting down {self.seconds:.0f} s after "
            f"the signal; exiting now",
            file=sys.stderr,
            flush=True,
        )
        os._exit(EXIT_DEADLINE)


class DeadlineServer(uvicorn.Server):
    """uvicorn's Server, arming the deadline the moment it receives SIGTERM or SIGINT (it
    holds the signals while it serves and hands them on only after its own shutdown)."""

    def __init__(self, config: uvicorn.Config, deadline: ExitDeadline) -> None:
        super().__init__(config)
        self.deadline = deadline

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.deadline.arm()
        super().handle_exit(sig, frame)
