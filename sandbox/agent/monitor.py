"""What the dev server is doing: status, build errors, and when writes count as applied.

`DevServerMonitor` is the agent's view of Vite. The supervisor (devserver) tells it when Vite
listens or exits; its own tasks, owned by the agent's TaskGroup, do the rest:

    listen   Vite's HMR socket, reconnected whenever Vite restarts; events go to `_on_hmr`
    probe    requests what a browser would after an update, so compile errors surface
    acks     wakes at the next confirmation deadline

The agent hands it every write (`track`) and asks before each write whether the watcher would
miss it (`pace`). It sends `applied`, `status` and `buildError` frames itself, through `send`.

Status: `booting` until the first warm-up finished; `building` while a snapshot lands or Vite
restarts; `error` on a compile error or a dev-server crash; `ready` after the next successful
load. /healthz is 200 while the dev server is up and warmed, 503 otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sandbox.agent import hmr
from sandbox.agent.acks import Ack, AckTracker
from sandbox.agent.devserver import DevServer, DevServerHooks
from sandbox.agent.logs import CONSOLE_MARK, LogPump
from sandbox.agent.pacing import WritePacer
from sandbox.agent.probe import CrawlResult, crawl
from sandbox.agent.protocol import Status, frame
from sandbox.agent.toolchain import VITE, Toolchain

logger = logging.getLogger(__name__)

PROBE_TIMEOUT = 30.0
HMR_RETRY = 0.2
# Within what the gateway accepts (app/realtime/frames.py).
MAX_BUILD_ERROR = 8000
MAX_FILE_NAME = 512
MAX_DETAIL = 2000

Send = Callable[[dict[str, Any]], Awaitable[object]]


class DevServerMonitor:
    def __init__(
        self,
        root: Path,
        machine_id: str,
        send: Send,
        logs: LogPump,
        ack_timeout: float,
        toolchain: Toolchain = VITE,
    ) -> None:
        self._root = root
        self._machine_id = machine_id
        self._send = send
        self._logs = logs
        self.devserver = DevServer(
            root,
            DevServerHooks(self._listening_on, self._exited, self._output),
            toolchain=toolchain,
        )
        self.status, self._detail = Status.BOOTING, "starting the dev server"
        self._build_error: hmr.CompileFailed | None = None
        self._acks = AckTracker(ack_timeout)
        self._acks_changed = asyncio.Event()
        self._pacer = WritePacer(patience=ack_timeout)
        self._watcher_reported = asyncio.Event()
        self._hmr_connected = False
        self._listening = asyncio.Event()
        self._probe_wanted = asyncio.Event()
        self._probe_urls: set[str] = set()
        self._probe_full = False
        self._hydrate_seq: int | None = None
        # A failed write: the status it replaced, and the error status it set.
        self._write_error: tuple[tuple[Status, str], tuple[Status, str]] | None = None
        self.stopping = False

    # -- what the agent asks ------------------------------------------------------------------

    async def pace(self, paths: list[str]) -> None:
        """Wait until the dev server's watcher will notice a write of each of `paths`."""
        loop = asyncio.get_running_loop()
        while self._hmr_connected and (at := self._pacer.ready_at(paths)) > loop.time():
            self._watcher_reported.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(at):
                    await self._watcher_reported.wait()

    async def track(self, seq: int, changed: list[str], *, snapshot: bool = False) -> None:
        """Confirm `seq` with `applied` once the dev server has picked up `changed`."""
        if snapshot:
            self._hydrate_seq = seq
            if changed and self.status is not Status.BOOTING:
                await self.set_status(Status.BUILDING, f"applying snapshot at seq {seq}")
        now = asyncio.get_running_loop().time()
        self._pacer.wrote(changed, now)
        await self._deliver(self._acks.add(seq, changed, now))
        self._acks_changed.set()

    def forget_pending(self) -> None:
        """The session changed: confirmations of the last one's writes mean nothing now."""
        self._acks.clear()

    async def set_status(self, status: Status, detail: str) -> None:
        detail = detail[:MAX_DETAIL]
        if (status, detail) == (self.status, self._detail):
            return
        self.status, self._detail = status, detail
        await self._send(frame("status", state=status.value, detail=detail))

    async def write_failed(self, detail: str) -> None:
        """A write to the workspace failed: `error` until a write succeeds again."""
        before = (self.status, self._detail)
        await self.set_status(Status.ERROR, detail)
        if self._write_error is None:
            self._write_error = (before, (self.status, self._detail))
        else:
            self._write_error = (self._write_error[0], (self.status, self._detail))

    async def write_succeeded(self) -> None:
        """A write went through after a failed one: the machine is back to what it was before
        the failure, unless something else (a build error, a restart) has set the status since,
        which then stands."""
        if self._write_error is None:
            return
        before, failure = self._write_error
        self._write_error = None
        if (self.status, self._detail) == failure:
            await self.set_status(*before)

    async def report_build_error(self, error: hmr.CompileFailed) -> None:
        """A build error found outside the dev server (a dependency install that failed):
        reported, restated and cleared like the dev server's own."""
        await self._on_compile_error(error)

    def recheck(self) -> None:
        """Load the page again, and let what it finds set the status."""
        self._request_probe(full=True)

    async def restate(self) -> None:
        """Tell a (re)connected orchestrator where things stand."""
        await self._send(frame("status", state=self.status.value, detail=self._detail))
        if self.status is Status.ERROR and self._build_error is not None:
            await self._send_build_error(self._build_error)

    def health(self) -> tuple[int, bytes]:
        serving = self.devserver.port is not None and self.status is not Status.BOOTING
        body = {"status": self.status.value, "machine": self._machine_id}
        return (200 if serving else 503), json.dumps(body).encode()

    # -- confirmations ------------------------------------------------------------------------

    async def _deliver(self, acks: list[Ack]) -> None:
        for ack in acks:
            if ack.timed_out:
                note = f"dev server did not confirm seq {ack.seq} within {self._acks.timeout}s"
                logger.warning(note)
                await self._logs.emit("devserver", "warn", note)
            await self._send(frame("applied", seq=ack.seq))
            if ack.seq == self._hydrate_seq:
                self._hydrate_seq = None
                self._request_probe(full=True)

    async def run_acks(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._acks_changed.clear()
            try:
                async with asyncio.timeout_at(self._acks.next_deadline()):
                    await self._acks_changed.wait()
            except TimeoutError:
                await self._deliver(self._acks.expire(loop.time()))

    # -- the dev server -----------------------------------------------------------------------

    async def _listening_on(self, port: int) -> None:
        logger.info("dev server listening on %s", port)
        self._listening.set()

    async def _exited(self, code: int | None, delay: float) -> None:
        self._listening.clear()
        if self.stopping:
            return
        detail = f"dev server exited with code {code}; restarting in {delay:.1f}s"
        logger.warning(detail)
        await self.set_status(Status.ERROR, detail)

    def _output(self, line: str) -> None:
        self._logs.feed(line)
        if not line.startswith(CONSOLE_MARK):
            print(line, file=sys.stdout, flush=True)

    async def run_listener(self) -> None:
        while True:
            await self._listening.wait()
            port = self.devserver.port
            if port is not None:
                await self.devserver.toolchain.listen(port, self._root, self._on_hmr)
                self._hmr_connected = False
                if self.devserver.port == port and not self.stopping:
                    # Same process, socket gone: Vite is restarting (its config changed).
                    await self.set_status(Status.BUILDING, "dev server restarting")
            await asyncio.sleep(HMR_RETRY)

    async def _on_hmr(self, event: hmr.HmrEvent) -> None:
        now = asyncio.get_running_loop().time()
        if isinstance(event, hmr.FileChanged):
            self._pacer.reported(event.path, now)
            self._watcher_reported.set()
            await self._deliver(self._acks.file_changed(event.path))
        elif isinstance(event, hmr.Connected):
            # A fresh Vite read every file from disk: whatever was written is picked up.
            self._hmr_connected = True
            self._pacer.reset()
            self._watcher_reported.set()
            await self._deliver(self._acks.confirm_all())
            self._request_probe(full=True)
        else:
            await self._deliver(self._acks.dev_server_message())
            if isinstance(event, hmr.ModulesUpdated):
                self._request_probe(urls=event.urls)
            elif isinstance(event, hmr.PageReloaded):
                self._request_probe(full=True)
            else:
                await self._on_compile_error(event)
        self._acks_changed.set()

    async def _on_compile_error(self, error: hmr.CompileFailed) -> None:
        if error == self._build_error and self.status is Status.ERROR:
            return  # the same error, reported again for another client's request
        self._build_error = error
        await self._send_build_error(error)
        await self.set_status(Status.ERROR, error.summary())

    async def _send_build_error(self, error: hmr.CompileFailed) -> None:
        await self._send(
            frame(
                "buildError",
                message=error.message[:MAX_BUILD_ERROR],
                file=error.file[:MAX_FILE_NAME],
                line=error.line,
                column=error.column,
            )
        )

    # -- probing ------------------------------------------------------------------------------

    def _request_probe(self, *, urls: tuple[str, ...] = (), full: bool = False) -> None:
        self._probe_urls.update(urls)
        self._probe_full = self._probe_full or full
        self._probe_wanted.set()

    async def run_prober(self) -> None:
        while True:
            await self._probe_wanted.wait()
            self._probe_wanted.clear()
            full, urls = self._probe_full, sorted(self._probe_urls)
            self._probe_full, self._probe_urls = False, set()
            port = self.devserver.port
            if port is None:
                continue
            try:
                if full:
                    result = await self.devserver.toolchain.warm(port, self._root, PROBE_TIMEOUT)
                else:
                    result = await crawl(port, urls, timeout=PROBE_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                logger.info("probe failed: %s", exc)
                continue
            await self._probed(result)

    async def _probed(self, result: CrawlResult) -> None:
        if self.devserver.port is None or self._hydrate_seq is not None:
            return  # a snapshot is still landing: its own probe decides
        if result.build_error is not None:
            await self._on_compile_error(result.build_error)
        elif result.ok:
            self._build_error = None
            await self.set_status(Status.READY, "")
        elif self.status is not Status.ERROR:
            await self.set_status(Status.ERROR, f"could not load {', '.join(result.failed[:3])}")
