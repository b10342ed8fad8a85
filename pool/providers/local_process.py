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
import fcntl
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path

POLL_SECONDS = 0.05
PORT_ATTEMPTS = 20
LISTEN_BACKLOG = 128
# The machine's listening socket is its fd 4 (fd 3 is its token, see local_supervisor).
LISTEN_FD = 4
FIRST_SOURCE_FD = 10


def spawn(
    argv: Sequence[str],
    env: dict[str, str],
    log_path: Path,
    stdin: bytes,
    listener: socket.socket,
    spawned: Callable[[int], None],
) -> int:
    """Start argv in a new session (its own process group) and return its pid.

    The child reads `stdin` (then EOF) on fd 0 and inherits `listener` as fd LISTEN_FD; its
    stdout and stderr go to `log_path`. `spawned(pid)` runs before the child gets its input: a
    caller that records the pid there never has a child at work that no record names (killed
    before it, the child reads EOF and exits; should it raise, likewise).
    """
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    read_end, write_end = os.pipe()
    # Every source above the targets (0-2, LISTEN_FD), so no dup2 overwrites a later source.
    sources = [_high(fd) for fd in (read_end, log_fd, listener.fileno())]
    try:
        pid = os.posix_spawn(
            argv[0],
            list(argv),
            env,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, sources[0], 0),
                (os.POSIX_SPAWN_DUP2, sources[1], 1),
                (os.POSIX_SPAWN_DUP2, sources[1], 2),
                (os.POSIX_SPAWN_DUP2, sources[2], LISTEN_FD),
            ],
            setsid=True,
        )
        spawned(pid)
        # After the spawn, so a large input cannot fill the pipe with nobody reading it. A child
        # that died at once breaks the pipe: it reads as FAILED, with its log, like any other.
        with contextlib.suppress(BrokenPipeError), open(write_end, "wb", closefd=False) as pipe:
            pipe.write(stdin)
        return pid
    finally:
        for fd in (log_fd, read_end, write_end, *sources):
            os.close(fd)


def _high(fd: int) -> int:
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, FIRST_SOURCE_FD)


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


def listen_socket(host: str, preferred: int | None, taken: set[int]) -> socket.socket:
    """A listening socket for a machine: on `preferred` if it is free, else a port the OS picks.

    `taken` holds the ports of other machines, which may be stopped and not bound right now.
    The provider binds the port and the machine inherits the socket, so there is no window in
    which another process could take the port between choosing it and using it.
    """
    candidates = [preferred] if preferred and preferred not in taken else []
    for candidate in [*candidates, *[0] * PORT_ATTEMPTS]:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # As a server restarting on its port would: a port in TIME_WAIT still counts as free.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((host, candidate))
            port: int = listener.getsockname()[1]
            if port not in taken:
                listener.listen(LISTEN_BACKLOG)
                return listener
        except OSError:
            pass
        listener.close()
    raise OSError(f"no free port on {host}")
