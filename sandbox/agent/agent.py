"""The agent: one preview machine's link between the orchestrator, the disk and the dev server.

Concurrency. Everything runs on one event loop, in tasks owned by `Agent.run` (a TaskGroup):

    link       the orchestrator socket; hands frames to `handle_frame` one at a time, in order
    devserver  Vite's supervisor (sandbox.agent.devserver)
    logs       turns Vite's output into rate-limited `log` frames
    stats      the machine's own report: restarts, CPU and memory (sandbox.agent.stats)
    listener, prober, acks
               the DevServerMonitor's view of Vite (sandbox.agent.monitor)

Frames are applied one at a time inside `handle_frame`: validate everything, wait if Vite's
watcher would miss a write of a file it just reported (see pacing), write, persist the new
seq. So no two patches ever interleave, and a restarted agent resumes from the persisted seq;
confirmations (`applied`) are the monitor's, in seq order. No task shares state with another
except through these two objects, and none blocks: the file writes are small and local.
A write that changes package.json's dependencies first waits for their install, which restarts
the dev server around the write (sandbox.agent.installer): the frames after it wait too, since
they may import what it adds; the other tasks do not.

Shutdown is a sequence: stop taking browser requests (the front), then cancel the rest; the
dev server's supervisor stops Vite (SIGTERM, then SIGKILL) as it unwinds.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
from dataclasses import dataclass, field, replace

from sandbox.agent import toolchain
from sandbox.agent.errors import PatchRejected
from sandbox.agent.files import Workspace, overlay, parse_changes, parse_deleted, parse_files
from sandbox.agent.front import Front
from sandbox.agent.installer import DependencyInstaller, InstallConfig, manifest_in
from sandbox.agent.link import OrchestratorLink
from sandbox.agent.logs import LogPump
from sandbox.agent.monitor import DevServerMonitor
from sandbox.agent.protocol import (
    Assign,
    Hydrate,
    Patch,
    Ping,
    ServerError,
    ServerFrame,
    frame,
)
from sandbox.agent.state import AgentState, StateFile
from sandbox.agent.stats import StatsReporter

logger = logging.getLogger(__name__)

RESYNC_COOLDOWN = 1.0


@dataclass(frozen=True)
class AgentConfig:
    machine_id: str
    token: str
    orchestrator: str
    host: str
    port: int
    ack_timeout: float = 2.0
    # An inherited listening socket to serve on instead of binding host:port.
    listen_fd: int | None = None
    dependencies: InstallConfig = field(default_factory=InstallConfig)


class Agent:
    def __init__(self, config: AgentConfig, workspace: Workspace, state_file: StateFile) -> None:
        self._config = config
        self._workspace = workspace
        self._state_file = state_file
        self._state = state_file.load()
        self._link = OrchestratorLink(
            config.orchestrator,
            config.machine_id,
            config.token,
            hello=self._hello,
            on_frame=self.handle_frame,
            on_connect=self._restate,
        )
        self._logs = LogPump(self._link.send)
        chain = toolchain.for_template(workspace.template_dir)
        self._monitor = DevServerMonitor(
            workspace.root,
            config.machine_id,
            self._link.send,
            self._logs,
            config.ack_timeout,
            chain,
        )
        self._deps = DependencyInstaller(
            workspace.root, workspace.template_dir, self._monitor, self._logs, config.dependencies
        )
        devserver = self._monitor.devserver
        self._stats = StatsReporter(self._link.send, devserver)
        listener = None if config.listen_fd is None else socket.socket(fileno=config.listen_fd)
        self._front = Front(
            config.host,
            config.port,
            self._monitor.health,
            lambda: devserver.port,
            listener,
            expo_manifests=chain is toolchain.METRO,
        )
        self._last_resync = -math.inf

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set."""
        await self._front.start()
        logger.info(
            "machine %s: front on %s:%s",
            self._config.machine_id,
            self._config.host,
            self._config.port,
        )
        try:
            async with asyncio.TaskGroup() as group:
                work = (
                    self._link.run(),
                    self._monitor.devserver.run(),
                    self._logs.run(),
                    self._monitor.run_listener(),
                    self._monitor.run_prober(),
                    self._monitor.run_acks(),
                    self._stats.run(),
                )
                tasks = [group.create_task(job) for job in work]
                await stop.wait()
                self._monitor.stopping = True
                await self._front.close()
                for task in tasks:
                    task.cancel()
        finally:
            await self._front.close()

    async def handle_frame(self, message: ServerFrame) -> None:
        if isinstance(message, Patch):
            await self._on_patch(message)
        elif isinstance(message, Hydrate):
            await self._on_hydrate(message)
        elif isinstance(message, Assign):
            if message.session != self._state.session:
                self._monitor.forget_pending()
                self._save(AgentState(session=message.session, epoch=message.epoch))
            elif message.epoch is not None and message.epoch != self._state.epoch:
                # The session's edit log was lost and began again: its seqs start from 1. The
                # files stay (they are the best copy there is); the editor re-sends its own
                # files as the new epoch's first patches, which are written over them.
                logger.warning(
                    "session %s: edit log epoch %s -> %s; counting from 0 again",
                    message.session,
                    self._state.epoch,
                    message.epoch,
                )
                self._monitor.forget_pending()
                self._save(replace(self._state, applied_seq=0, epoch=message.epoch))
            # What the agent said while warm concerned no session, and the gateway kept none
            # of it: say it again, so the session's editors see "ready" rather than nothing.
            await self._monitor.restate()
        elif isinstance(message, Ping):
            await self._link.send(frame("pong"))
        elif isinstance(message, ServerError):
            logger.warning("orchestrator refused a frame: %s %s", message.code, message.message)

    async def _on_patch(self, patch: Patch) -> None:
        applied = self._state.applied_seq
        if patch.seq <= applied:
            return  # already written: exactly once
        if patch.seq > applied + 1:
            await self._resync(patch.seq)
            return
        try:
            changes = parse_changes(patch.changes)
            staged = await self._deps.stage(manifest_in(changes))
            await self._monitor.pace([change.path for change in changes])
            changed = await self._deps.commit(staged, lambda: self._workspace.apply(changes))
        except PatchRejected as exc:
            # Refused patches consume their seq, or the stream would stall on them forever.
            self._save(replace(self._state, applied_seq=patch.seq))
            await self._reject(patch.seq, exc)
            return
        except OSError as exc:
            # Not advanced: the next patch looks like a gap and the orchestrator resends this.
            await self._monitor.write_failed(f"could not write patch {patch.seq}: {exc}")
            return
        await self._monitor.write_succeeded()
        self._save(replace(self._state, applied_seq=patch.seq))
        await self._monitor.track(patch.seq, changed)

    async def _on_hydrate(self, snapshot: Hydrate) -> None:
        try:
            writes = overlay(
                self._workspace.template_writes(),
                parse_files(snapshot.files, snapshot.binary),
                parse_deleted(snapshot.deleted),
            )
            staged = await self._deps.stage(manifest_in(writes, whole=True))
            await self._monitor.pace([write.path for write in writes])
            changed = await self._deps.commit(staged, lambda: self._workspace.replace_all(writes))
        except PatchRejected as exc:
            await self._reject(snapshot.seq, exc)
            return
        except OSError as exc:
            await self._monitor.write_failed(f"could not write snapshot {snapshot.seq}: {exc}")
            return
        await self._monitor.write_succeeded()
        if snapshot.session != self._state.session:
            self._monitor.forget_pending()
        self._save(
            AgentState(session=snapshot.session, applied_seq=snapshot.seq, epoch=snapshot.epoch)
        )
        await self._monitor.track(snapshot.seq, changed, snapshot=True)

    async def _reject(self, seq: int, exc: PatchRejected) -> None:
        logger.warning("refused seq %s: %s", seq, exc.message)
        await self._link.send(frame("rejected", seq=seq, code=exc.code, message=exc.message))

    async def _resync(self, seq: int) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._last_resync < RESYNC_COOLDOWN:
            return
        self._last_resync = now
        logger.info("got seq %s after %s: asking again", seq, self._state.applied_seq)
        await self._link.send_hello()

    def _save(self, state: AgentState) -> None:
        self._state_file.save(state)
        self._state = state

    def _hello(self) -> dict[str, object]:
        return frame(
            "hello",
            machineId=self._config.machine_id,
            session=self._state.session,
            appliedSeq=self._state.applied_seq,
            **({"epoch": self._state.epoch} if self._state.epoch else {}),
        )

    async def _restate(self) -> None:
        await self._monitor.restate()
