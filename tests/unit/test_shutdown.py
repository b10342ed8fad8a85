"""The shutdown deadline's backstop (app/shutdown.py): a process still running after its
deadline is ended, whatever it is stuck in."""

from __future__ import annotations

import subprocess
import sys
import time

from app.shutdown import EXIT_DEADLINE

HUNG = """
import time
from app.shutdown import ExitDeadline
deadline = ExitDeadline(float({seconds}), "test")
deadline.arm()
time.sleep({rearm_after})
deadline.arm()  # a second signal: the first one's deadline stands
time.sleep(60)  # stuck: nothing in this process would ever end it
"""


def _run(seconds: float, rearm_after: float) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", HUNG.format(seconds=seconds, rearm_after=rearm_after)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done, time.monotonic() - started


def test_a_process_stuck_past_its_deadline_is_ended() -> None:
    done, elapsed = _run(seconds=1.0, rearm_after=0.5)

    assert done.returncode == EXIT_DEADLINE, done.stderr
    assert "test still shutting down 1 s after the signal" in done.stderr
    assert 1.0 <= elapsed < 5.0  # the re-arm at 0.5 s did not push it to 1.5 s and beyond


def test_a_process_that_exits_in_time_keeps_its_own_status() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from app.shutdown import ExitDeadline; "
            "ExitDeadline(5.0, 'test').arm(); sys.exit(3)",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 3 and "shutting down" not in done.stderr
