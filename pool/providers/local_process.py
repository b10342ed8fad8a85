"""Spawning, probing and killing the process group of one local machine.

Machines are spawned with os.posix_spawn rather than subprocess.Popen or asyncio subprocesses:
a machine outlives the call (and often the event loop) that started it, and is stopped by
whichever process gets there first. A Popen object would warn when collected with its child
still running, and an asyncio transport is bound to one loop; a bare pid stored in the record
is what every process can share. The spawner reaps its own children (`reap`) so they do not
linger as zombies; any process recognises a zombie it cannot reap as dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import Sequence
from pathlib import Path

POLL_SECONDS = 0.05
PORT_ATTEMPTS = 20


def spawn(argv: Sequence[str], env: dict[str, str], log_path: Path) -> int:
    """Start argv in a new session (its own process group) and return its pid."""
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        return os.posix_spawn(
            argv[0],
            list(argv),
            env,
            file_actions=[
                # The machine must not read the orchestrator's stdin.
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log_fd, 1),
                (os.POSIX_SPAWN_DUP2, log_fd, 2),
            ],
            setsid=True,
        )
    finally:
        os.close(log_fd)


def reap(pid: int) -> bool:
    """Collect pid's exit status if it is our exited child; True if it was reaped."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return reaped == pid


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    # Another process's exited child keeps its pid until that parent reaps it.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The command name in parentheses may contain spaces; the state follows the last ')'.
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


async def wait_exited(pid: int, timeout: float, reaper: set[int]) -> bool:
    """Poll until pid has exited, reaping it if `reaper` holds it; True if it did in time."""
    deadline = time.monotonic() + timeout
    while True:
        if pid in reaper and reap(pid):
            reaper.discard(pid)
        if not is_alive(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(POLL_SECONDS)


async def terminate_group(pid: int, pgid: int, grace: float, reaper: set[int]) -> None:
    """SIGTERM the group, SIGKILL it after `grace` seconds, and wait for the leader to go."""
    signal_group(pgid, signal.SIGTERM)
    await wait_exited(pid, grace, reaper)
    # Unconditionally: children the leader started must not outlive it, even if it exited
    # cleanly. The group id cannot be reused while any member is alive.
    signal_group(pgid, signal.SIGKILL)
    await wait_exited(pid, grace, reaper)


def free_port(host: str, preferred: int | None, taken: set[int]) -> int:
    """A port that was free a moment ago: `preferred` if it still is, else one the OS picks.

    `taken` holds the ports of other machines, which may not have bound theirs yet. The child
    binds the port a moment later; if another process wins that race the child exits and
    `wait` reports the failure.
    """
    candidates = [preferred] if preferred and preferred not in taken else []
    for candidate in [*candidates, *[0] * PORT_ATTEMPTS]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # As the child's http.server does, so a port in TIME_WAIT still counts as free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, candidate))
            except OSError:
                continue
            port: int = probe.getsockname()[1]
        if port not in taken:
            return port
    raise OSError(f"no free port on {host}")
