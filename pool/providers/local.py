"""Local machines: each one a process group on this host running the sandbox agent (given an
orchestrator URL to connect to; without one, the placeholder that only answers /healthz).

Each machine is confined as far as this host allows (local_isolation): a bubblewrap sandbox
with its own filesystem view, uid, pid and network namespaces, cgroup limits, and a minimal
environment. The group's leader is local_supervisor, which gets the machine's plan, token
included, on its stdin and the listening socket the provider bound as its fd 4; the token
never appears on a command line.

Cross-process design. The web process and the worker process each build their own provider on
the same base directory, and a machine created by one is stopped, reset or destroyed by the
other. So a provider instance holds nothing about its machines: everything lives in the
machine's directory (see local_records), in a JSON record with port, pid and process group that
is replaced atomically, and every mutation holds a flock on that directory. Instances can be
created and dropped freely, and machines outlive them.

What is true right now is probed on every read, never trusted from the record: a record saying
STARTING or STARTED whose pid is gone reads as FAILED, and `healthy` means /healthz answered
200 with this machine's id (a restarted machine may land on a port another one used before).
The record's state moves from STARTING to STARTED the first time a health check passes, so a
machine that later turns unhealthy is told apart from one that never came up.

The one piece of per-instance state is the set of pids this instance spawned: posix_spawn makes
us their parent, and we reap them so they do not linger as zombies (see local_process).
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import os
import secrets
import shutil
import sys
import time
from pathlib import Path

import httpx

from pool.core.errors import MachineNotFound, ProviderError
from pool.core.provider import Machine, MachineSpec, MachineState, new_machine_token
from pool.providers import local_cgroup, local_isolation, local_process, local_usage
from pool.providers.local_records import LocalMachineFile, MachineStore
from pool.providers.local_supervisor import LISTEN_FD, TOKEN_FD, Plan

# pool may not import sandbox (import-linter), so the agent is located on disk: the directory
# that holds the `pool` package holds `sandbox` too, in a checkout and in site-packages alike.
SOURCE_ROOT = Path(__file__).resolve().parents[2]
AGENT_MODULE = "sandbox.agent"
PLACEHOLDER_MODULE = "sandbox.placeholder"
TEMPLATES_DIR = SOURCE_ROOT / "sandbox" / "templates"
TEMPLATE_INSTALL_MODULE = "sandbox.templates.install"
SUPERVISOR_MODULE = "pool.providers.local_supervisor"
EGRESS_SCRIPT = SOURCE_ROOT / "sandbox" / "egress.sh"
DEFAULT_PIDS_MAX = 512
# Inside a sandbox: a private tmpfs, since the machine's uid owns no home on this host.
SANDBOX_HOME = "/tmp"

HEALTH_TIMEOUT = 0.5
STOP_GRACE = 2.0
LOCK_TIMEOUT = 30.0
WAIT_POLL = 0.1
RUNNING = frozenset({MachineState.STARTING, MachineState.STARTED})

logger = logging.getLogger(__name__)


def observed_state(
    record: LocalMachineFile, *, alive: bool, healthy: bool, now: float, start_timeout: float
) -> MachineState:
    """The state to report for a record, given what probing its process just found."""
    if record.state not in RUNNING:
        return record.state
    if not alive:
        return MachineState.FAILED
    if healthy:
        return MachineState.STARTED
    started_at = record.started_at if record.started_at is not None else record.created_at
    if record.state is MachineState.STARTING and now - started_at > start_timeout:
        # Alive but never answered: hung, and waiting longer will not help.
        return MachineState.FAILED
    return record.state


class LocalProvider:
    """Machines as local process groups, shared through `base_dir` by every process."""

    name = "local"

    def __init__(
        self,
        base_dir: Path,
        python: str = sys.executable,
        host: str = "127.0.0.1",
        start_timeout: float = 10.0,
        orchestrator_ws_url: str | None = None,
        templates_dir: Path | None = None,
        pids_max: int = DEFAULT_PIDS_MAX,
        isolate: bool = True,
    ) -> None:
        """`isolate=False` runs machines unconfined even where the host allows more (tests of
        the degraded mode); otherwise they get whatever local_isolation.probe finds."""
        self._base_dir = base_dir
        self._store = MachineStore(base_dir)
        self._python = python
        self._host = host
        self._start_timeout = start_timeout
        # With an orchestrator URL machines run the agent, which connects back to it there.
        self._orchestrator_ws_url = orchestrator_ws_url
        self._templates_dir = templates_dir or TEMPLATES_DIR
        self._pids_max = pids_max
        self._isolation = (
            local_isolation.probe(EGRESS_SCRIPT) if isolate else local_isolation.UNCONFINED
        )
        self._forwards = (
            local_isolation.orchestrator_forwards(orchestrator_ws_url)
            if orchestrator_ws_url is not None and self._isolation.sandbox
            else []
        )
        self._installed_templates: set[str] = set()
        self._install_locks: dict[str, asyncio.Lock] = {}
        self._children: set[int] = set()
        # No keep-alive: a pooled connection to a machine that has since been stopped is only
        # a source of spurious errors. No trust_env: a proxy must not see loopback requests.
        self._http = httpx.AsyncClient(
            timeout=HEALTH_TIMEOUT,
            trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    async def create(self, spec: MachineSpec) -> Machine:
        await self._ensure_template(spec.template)
        machine_id = f"loc-{secrets.token_hex(6)}"
        self._store.make_dirs(machine_id)
        record = LocalMachineFile(
            id=machine_id,
            template=spec.template,
            region=spec.region,
            state=MachineState.CREATED,
            created_at=time.time(),
            metadata={
                "token": new_machine_token(),
                "cpus": str(spec.cpus),
                "memory_mb": str(spec.memory_mb),
            },
        )
        self._store.write(record)
        self._spawn(record)
        return self._machine(record, MachineState.STARTING, healthy=False)

    async def start(self, machine_id: str) -> Machine:
        async with self._store.machine_lock(machine_id, LOCK_TIMEOUT):
            record = self._store.read(machine_id)
            if not (record.state in RUNNING and record.pid and self._alive(record.pid)):
                # Clears whatever a crashed machine left of its process group.
                await self._stop_locked(record)
                self._spawn(record)
        return await self._observe(record)

    async def stop(self, machine_id: str) -> Machine:
        async with self._store.machine_lock(machine_id, LOCK_TIMEOUT):
            record = self._store.read(machine_id)
            await self._stop_locked(record)
        return self._machine(record, record.state, healthy=False)

    async def destroy(self, machine_id: str) -> None:
        try:
            async with self._store.machine_lock(machine_id, LOCK_TIMEOUT):
                try:
                    record = self._store.read(machine_id)
                except MachineNotFound:
                    pass  # a create that died before writing its record: clear the directory
                else:
                    await self._stop_locked(record)
                self._store.remove(machine_id)
        except MachineNotFound:
            return

    async def reset(self, machine_id: str) -> Machine:
        async with self._store.machine_lock(machine_id, LOCK_TIMEOUT):
            record = self._store.read(machine_id)
            await self._stop_locked(record)
            self._store.wipe_workspace(machine_id)
            record.metadata["token"] = new_machine_token()
            self._spawn(record)
        return self._machine(record, MachineState.STARTING, healthy=False)

    async def get(self, machine_id: str) -> Machine:
        self._reap_children()
        return await self._observe(self._store.read(machine_id))

    async def list(self) -> list[Machine]:
        self._reap_children()
        records = self._store.records()
        return builtins.list(await asyncio.gather(*(self._observe(r) for r in records)))

    async def wait(self, machine_id: str, state: MachineState, timeout: float) -> Machine:
        deadline = time.monotonic() + timeout
        while True:
            self._reap_children()
            try:
                record = self._store.read(machine_id)
            except MachineNotFound:
                if state is MachineState.DESTROYED:
                    return Machine.tombstone(machine_id)
                raise
            machine = await self._observe(record)
            if machine.state is state and (state is not MachineState.STARTED or machine.healthy):
                return machine
            if state is MachineState.STARTED and machine.state is MachineState.FAILED:
                raise ProviderError(
                    f"machine {machine_id} failed to start: {self._store.log_tail(machine_id)}"
                )
            if time.monotonic() >= deadline:
                raise ProviderError(
                    f"machine {machine_id} is {machine.state}, not {state}, after {timeout}s"
                )
            await asyncio.sleep(WAIT_POLL)

    def usage(self) -> dict[str, local_usage.Usage]:
        """CPU time and memory of every running machine (pool.providers.local_usage)."""
        found = {}
        for record in self._store.records():
            if record.pid is None or not self._alive(record.pid):
                continue
            usage = local_usage.read_usage(self._isolation.cgroups, record.id, record.pgid)
            if usage is not None:
                found[record.id] = usage
        return found

    async def aclose(self) -> None:
        # Machines are deliberately left running: they belong to the base directory, not to
        # this instance.
        await self._http.aclose()

    def _spawn(self, record: LocalMachineFile) -> None:
        taken = {
            other.port
            for other in self._store.records(exclude=record.id)
            if other.port is not None and other.state is not MachineState.STOPPED
        }
        supervisor = [
            sys.executable, "-m", SUPERVISOR_MODULE,
            # For people reading `ps`; the supervisor acts on its plan only.
            "--machine", record.id, "--workspace", str(self._store.workspace(record.id)),
        ]  # fmt: skip
        # A minimal environment: the orchestrator's secrets (database URL, Fly token) must not
        # reach a machine that runs user code.
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "PYTHONPATH": str(SOURCE_ROOT),
            "PYTHONUNBUFFERED": "1",
        }

        def recorded(pid: int) -> None:
            # Before the supervisor has its plan: a process killed between the spawn and this
            # write would leave a machine running that no record names, so nothing would stop.
            self._children.add(pid)
            record.port, record.pid, record.pgid = port, pid, pid
            record.state, record.started_at = MachineState.STARTING, time.time()
            self._store.write(record)

        try:
            with local_process.listen_socket(self._host, record.port, taken) as listener:
                port: int = listener.getsockname()[1]
                plan = self._plan(record, port, env)
                local_process.spawn(
                    supervisor, env, self._store.log_path(record.id), plan.to_json().encode(),
                    listener, recorded,
                )  # fmt: skip
        except OSError as exc:
            raise ProviderError(f"could not start machine {record.id}: {exc}") from exc

    def _plan(self, record: LocalMachineFile, port: int, env: dict[str, str]) -> Plan:
        workspace = self._store.workspace(record.id)
        command = [
            self._python, "-m",
            PLACEHOLDER_MODULE if self._orchestrator_ws_url is None else AGENT_MODULE,
            "--port", str(port), f"--listen-fd={LISTEN_FD}",
            "--workspace", str(workspace), "--host", self._host, "--machine-id", record.id,
        ]  # fmt: skip
        if self._orchestrator_ws_url is not None:
            command += [
                f"--token-fd={TOKEN_FD}",
                f"--orchestrator={self._orchestrator_ws_url}",
                f"--template={record.template}",
                f"--templates-dir={self._templates_dir}",
            ]
        isolation = self._isolation
        limits = local_cgroup.Limits(
            memory_mb=int(record.metadata.get("memory_mb", "1024")),
            cpus=float(record.metadata.get("cpus", "1")),
            pids_max=self._pids_max,
        )
        cgroup = record.id if isolation.cgroups and isolation.cgroups.parents else None
        # The placeholder connects to nobody: it gets no token.
        token = record.metadata["token"] if self._orchestrator_ws_url is not None else ""
        if isolation.bwrap is None or isolation.setpriv is None:
            return Plan(command, env, token, cgroup, limits)
        uid = local_isolation.machine_uid(record.id)
        tools = local_isolation.tool_dirs(
            self._python, shutil.which("node"), SOURCE_ROOT / "sandbox", self._templates_dir
        )
        argv = local_isolation.sandbox_argv(
            bwrap=isolation.bwrap,
            setpriv=isolation.setpriv,
            tools=tools,
            hide=self._base_dir.absolute(),
            workspace=workspace.absolute(),
            uid=uid,
            hostname=record.id,
            inner=command,
            system=local_isolation.system_mounts(),
        )
        return Plan(
            argv,
            {**env, "HOME": SANDBOX_HOME},
            token,
            cgroup,
            limits,
            sandbox=True,
            uid=uid,
            workspace=str(workspace),
            ruleset=isolation.ruleset,
            nft=isolation.nft,
            forwards=self._forwards,
        )

    async def _ensure_template(self, template: str) -> None:
        """Install the template's npm dependencies the first time it is used (idempotent).
        One install per template at a time: a pool's first creates all wait for it."""
        if self._orchestrator_ws_url is None or template in self._installed_templates:
            return
        async with self._install_locks.setdefault(template, asyncio.Lock()):
            if template in self._installed_templates:
                return
            started = time.monotonic()
            logger.info("installing template %s (npm, once per lockfile) ...", template)
            await self._install_template(template)
            logger.info("template %s ready in %.1f s", template, time.monotonic() - started)

    async def _install_template(self, template: str) -> None:
        env = {"PATH": os.environ.get("PATH", os.defpath), "PYTHONPATH": str(SOURCE_ROOT)}
        if "HOME" in os.environ:
            env["HOME"] = os.environ["HOME"]  # npm's cache
        try:
            process = await asyncio.create_subprocess_exec(
                self._python, "-m", TEMPLATE_INSTALL_MODULE,
                f"--templates-dir={self._templates_dir}", template,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            output, _ = await process.communicate()
        except OSError as exc:
            raise ProviderError(f"could not install template {template}: {exc}") from exc
        if process.returncode != 0:
            raise ProviderError(f"could not install template {template}: {output.decode()}")
        self._installed_templates.add(template)

    async def _stop_locked(self, record: LocalMachineFile) -> None:
        if record.state is MachineState.STOPPED:
            return
        if record.pid is not None:
            record.state = MachineState.STOPPING
            self._store.write(record)
            pgid = record.pgid if record.pgid is not None else record.pid
            await local_process.terminate_group(record.pid, pgid, STOP_GRACE, self._children)
            # In a thread: removal waits (briefly) for the kernel to empty the cgroup.
            await asyncio.to_thread(self._remove_cgroup, record.id)
        # Forget the pid so a later stop can never signal whoever reuses it.
        record.state, record.pid, record.pgid = MachineState.STOPPED, None, None
        self._store.write(record)

    def _remove_cgroup(self, machine_id: str) -> None:
        # The supervisor makes it, but cannot be the one to remove it: it may have been killed,
        # and without a sandbox it becomes the agent (exec) inside the cgroup.
        layout = self._isolation.cgroups
        if layout is None:
            return
        try:
            local_cgroup.remove(layout, machine_id)
        except OSError as exc:
            logger.warning("machine %s: could not remove its cgroup: %s", machine_id, exc)

    async def _observe(self, record: LocalMachineFile) -> Machine:
        alive = record.pid is not None and self._alive(record.pid)
        healthy = alive and await self._probe_health(record)
        state = observed_state(
            record,
            alive=alive,
            healthy=healthy,
            now=time.time(),
            start_timeout=self._start_timeout,
        )
        if state is MachineState.STARTED and record.state is MachineState.STARTING:
            await self._mark_started(record)
        return self._machine(record, state, healthy)

    async def _mark_started(self, record: LocalMachineFile) -> None:
        # Opportunistic: if someone holds the lock they are changing the machine anyway.
        try:
            async with self._store.machine_lock(record.id, timeout=0):
                current = self._store.read(record.id)
                if current.state is MachineState.STARTING and current.pid == record.pid:
                    current.state = MachineState.STARTED
                    self._store.write(current)
        except ProviderError:
            pass

    async def _probe_health(self, record: LocalMachineFile) -> bool:
        try:
            response = await self._http.get(f"{self._address(record)}/healthz")
            body = response.json()
        except (httpx.HTTPError, ValueError):
            return False
        return (
            response.status_code == 200
            and isinstance(body, dict)
            and body.get("machine") == record.id
        )

    def _alive(self, pid: int) -> bool:
        if pid in self._children and local_process.reap(pid):
            self._children.discard(pid)
        return local_process.is_alive(pid)

    def _reap_children(self) -> None:
        # Machines this instance spawned may have been stopped by another process.
        for pid in builtins.list(self._children):
            if local_process.reap(pid):
                self._children.discard(pid)

    def _address(self, record: LocalMachineFile) -> str:
        return f"http://{self._host}:{record.port}" if record.port is not None else ""

    def _machine(self, record: LocalMachineFile, state: MachineState, healthy: bool) -> Machine:
        metadata = dict(record.metadata)
        metadata["workspace"] = str(self._store.workspace(record.id))
        if record.pid is not None:
            metadata["pid"] = str(record.pid)
        return Machine(
            id=record.id,
            template=record.template,
            region=record.region,
            state=state,
            address=self._address(record),
            created_at=record.created_at,
            healthy=healthy,
            metadata=metadata,
        )
