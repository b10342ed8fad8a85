"""Supervising the dev server (Vite, or Metro for Expo: sandbox.agent.toolchain) on an internal
loopback port.

`DevServer.run` is one long task: spawn Vite, read its output, wait until `GET /` answers,
report it listening, wait for it to exit, report that, back off, spawn again. Backoff grows
with consecutive crashes and starts over once a run has lasted `STABLE_SECONDS`. Cancelling
`run` stops Vite (SIGTERM, then SIGKILL after a grace period) before it returns.

A dev server must not outlive an agent that was killed outright (SIGKILL leaves no chance for
a clean stop; the next agent would start a second Vite). Node is started with a one-line
preloaded module that stops Vite (SIGTERM, which it handles cleanly) as soon as its parent
changes: portable, and with no fork-time hooks in this multi-threaded process, unlike
PR_SET_PDEATHSIG through preexec_fn. Vite's stdin is a pipe the agent never writes to rather
than /dev/null, because Vite shuts down when its stdin ends.

Vite picks its own port only if told to; the agent picks a free one and passes
`--strictPort`, so a lost race shows up as an exit and a retry on another port.

`restart` is a planned stop and start (the dependency installer swaps node_modules in between,
while no dev server reads it): no backoff, and no `exited` report, since nothing crashed. A lock
around the spawn keeps a process from starting while the swap runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sandbox.agent.backoff import backoff_delay
from sandbox.agent.logs import read_lines, strip_ansi
from sandbox.agent.probe import HOST, http_get
from sandbox.agent.toolchain import VITE, Toolchain

logger = logging.getLogger(__name__)
T = TypeVar("T")

READY_TIMEOUT = 60.0
READY_POLL = 0.1
STOP_GRACE = 3.0
STABLE_SECONDS = 30.0
MAX_LINE = 8192
ORPHAN_WATCHDOG = (
    "data:text/javascript,const parent=process.ppid;setInterval(()=>{"
    "if(process.ppid!==parent)process.kill(process.pid,'SIGTERM')},500).unref()"
)


@dataclass(frozen=True)
class DevServerHooks:
    """What the supervisor tells its owner, on the event loop; `output` must not block."""

    listening: Callable[[int], Awaitable[None]]
    exited: Callable[[int | None, float], Awaitable[None]]
    output: Callable[[str], None]


class DevServer:
    def __init__(
        self,
        root: Path,
        hooks: DevServerHooks,
        node: str | None = None,
        toolchain: Toolchain = VITE,
    ) -> None:
        self._root = root
        self.toolchain = toolchain
        self._hooks = hooks
        self._node = node or shutil.which("node")
        self.port: int | None = None
        self._process: asyncio.subprocess.Process | None = None
        # Starts after the first since the agent started (one per spawn after a backoff);
        # `restarted` is set at each, for sandbox.agent.stats.
        self.restarts = 0
        self.restarted = asyncio.Event()
        # Cleared while `restart` holds the dev server stopped; the spawn happens under the lock.
        self._resume = asyncio.Event()
        self._resume.set()
        self._spawn_lock = asyncio.Lock()
        self._planned_stops = 0

    def command(self, port: int) -> list[str]:
        return self.toolchain.argv(self._node, self._root, port, f"--import={ORPHAN_WATCHDOG}")

    async def run(self) -> None:
        failures = 0
        while True:
            await self._resume.wait()
            planned = self._planned_stops
            started = time.monotonic()
            code = await self._run_once()
            if self._planned_stops != planned:
                self.restarts += 1
                self.restarted.set()
                continue
            lived = time.monotonic() - started
            failures = 0 if lived >= STABLE_SECONDS else failures + 1
            delay = backoff_delay(failures - 1, base=0.5, cap=10.0) if failures else 0.0
            await self._hooks.exited(code, delay)
            await asyncio.sleep(delay)
            self.restarts += 1
            self.restarted.set()

    async def _run_once(self) -> int | None:
        port = _free_port()
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": os.environ.get("HOME", str(self._root)),
            "NODE_ENV": "development",
            "NO_COLOR": "1",
            "FORCE_COLOR": "0",
            **self.toolchain.env,
        }
        async with self._spawn_lock:
            if not self._resume.is_set():
                return None  # a restart began since `run` looked: it starts us once it is done
            self._process = process = await asyncio.create_subprocess_exec(
                *self.command(port),
                cwd=self._root,
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        try:
            async with asyncio.TaskGroup() as group:
                reader = group.create_task(self._read_output(process))
                if await self._wait_ready(process, port):
                    self.port = port
                    await self._hooks.listening(port)
                else:
                    logger.warning("dev server did not answer on %s; restarting it", port)
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                await process.wait()
                await reader
        finally:
            self.port = None
            self._process = None
            await _stop(process)
        return process.returncode

    async def restart(self, while_stopped: Callable[[], T]) -> T:
        """Stop the dev server, call `while_stopped` (nothing of it runs meanwhile), start it
        again at once; returns what `while_stopped` returned, or raises what it raised."""
        async with self._spawn_lock:
            self._planned_stops += 1
            self._resume.clear()
            process = self._process
        try:
            if process is not None:
                await _stop(process)
            return while_stopped()
        finally:
            self._resume.set()

    async def _wait_ready(self, process: asyncio.subprocess.Process, port: int) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT
        while process.returncode is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError, TimeoutError):
                response = await http_get(port, "/", timeout=5.0, accept="text/html")
                if response.status < 500:
                    return True
            await asyncio.sleep(READY_POLL)
        return False

    async def _read_output(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        await read_lines(process.stdout, MAX_LINE, self._line)

    def _line(self, raw: bytes) -> None:
        line = strip_ansi(raw[:MAX_LINE].decode("utf-8", "replace").rstrip("\r"))
        self._hooks.output(line)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        async with asyncio.timeout(STOP_GRACE):
            await asyncio.shield(process.wait())
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
    return port
