"""The sandbox agent as a real process: real Vite, real files, a real socket to a fake gateway.

`Gateway` below is the orchestrator's side of the sandbox socket (docs/protocol.md): it checks
the machine's credentials, answers pings, and on `hello` resends the patches of its stream that
the agent says it has not applied, as the real gateway does. Most tests share one booted
machine (module scope, in order: each starts from where the last one left the workspace);
the crash test and the template tests boot their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from pool.core.provider import MachineSpec, MachineState
from pool.providers.local import LocalProvider
from tests.conftest import free_port
from tests.e2e.stack import app_source

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "sandbox" / "templates"
TOKEN = "machine-token-for-tests"
BOOT_TIMEOUT = 40.0
STEP_TIMEOUT = 10.0

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


@dataclass
class Gateway:
    """The orchestrator's end of /api/sandbox/ws, for one machine."""

    machine_id: str
    token: str = TOKEN
    received: list[dict[str, Any]] = field(default_factory=list)
    stream: dict[int, dict[str, Any]] = field(default_factory=dict)
    resend_on_hello: bool = True
    socket: ServerConnection | None = None
    server: Server | None = None
    port: int = 0
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/sandbox/ws"

    async def start(self) -> None:
        self.server = await serve(
            self._serve, "127.0.0.1", self.port, process_request=self._authorize
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server, self.socket = None, None

    def _authorize(self, connection: ServerConnection, request: Request) -> Response | None:
        headers: Headers = request.headers
        if request.path != "/api/sandbox/ws" or (
            headers.get("Authorization") != f"Bearer {self.token}"
            or headers.get("x-machine-id") != self.machine_id
        ):
            return connection.respond(401, "bad machine credentials\n")
        return None

    async def _serve(self, connection: ServerConnection) -> None:
        self.socket = connection
        with contextlib.suppress(ConnectionClosed):  # the agent may be killed mid-frame
            await self._receive(connection)

    async def _receive(self, connection: ServerConnection) -> None:
        async for raw in connection:
            message = json.loads(raw)
            assert message["v"] == 1, message
            self.received.append(message)
            self._arrived.set()
            if message["type"] == "ping":
                await connection.send(json.dumps({"v": 1, "type": "pong"}))
            elif message["type"] == "hello" and self.resend_on_hello:
                for seq in sorted(self.stream):
                    if seq > message["appliedSeq"]:
                        await connection.send(json.dumps(self.stream[seq]))

    async def send(self, message: dict[str, Any]) -> None:
        assert self.socket is not None, "the agent is not connected"
        await self.socket.send(json.dumps({"v": 1, **message}))

    async def patch(self, seq: int, changes: list[dict[str, Any]], *, send: bool = True) -> None:
        self.stream[seq] = {"v": 1, "type": "patch", "seq": seq, "changes": changes}
        if send:
            await self.send(self.stream[seq])

    def mark(self) -> int:
        return len(self.received)

    def since(self, mark: int, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.received[mark:] if m["type"] == kind]

    async def expect(
        self,
        kind: str,
        where: Callable[[dict[str, Any]], bool] = lambda m: True,
        *,
        after: int = 0,
        timeout: float = STEP_TIMEOUT,
    ) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                for message in self.received[after:]:
                    if message["type"] == kind and where(message):
                        return message
                self._arrived.clear()
                await self._arrived.wait()

    async def applied(self, seq: int, after: int = 0, timeout: float = STEP_TIMEOUT) -> None:
        await self.expect("applied", lambda m: m["seq"] == seq, after=after, timeout=timeout)


@dataclass
class AgentProcess:
    process: asyncio.subprocess.Process
    port: int
    workspace: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def vite_pids(self) -> list[int]:
        """The agent's child processes (Vite)."""
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                children.append(int(stat.parent.name))
        return children

    async def crash(self) -> None:
        """SIGKILL the agent alone, leaving its children to fend for themselves."""
        self.process.kill()
        await self.process.wait()

    async def stop(self) -> None:
        if self.process.returncode is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(10):
                    await self.process.wait()
            except TimeoutError:
                os.killpg(self.process.pid, signal.SIGKILL)
                await self.process.wait()


async def start_agent(
    gateway: Gateway,
    workspace: Path,
    log: Path,
    template: str = "react-web",
    port: int = 0,
    env: dict[str, str] | None = None,
) -> AgentProcess:
    port = port or free_port()
    with log.open("ab") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sandbox.agent",
            "--machine-id", gateway.machine_id,
            "--orchestrator", gateway.url,
            "--port", str(port),
            "--workspace", str(workspace),
            "--template", template,
            "--templates-dir", str(TEMPLATES),
            cwd=REPO,
            env={
                "PATH": os.environ["PATH"],
                "PYTHONPATH": str(REPO),
                "HOME": str(log.parent),
                # As the machine image passes it: never on the command line.
                "PREVIEW_MACHINE_TOKEN": gateway.token,
                **(env or {}),
            },
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    return AgentProcess(process, port, workspace)


async def wait_ready(gateway: Gateway, after: int = 0) -> None:
    await gateway.expect(
        "status", lambda m: m["state"] == "ready", after=after, timeout=BOOT_TIMEOUT
    )


def project_tree(workspace: Path) -> dict[str, bytes]:
    """Every project file (not node_modules, Vite's cache or the agent's state) and its bytes."""
    skip = {"node_modules", ".vite", ".preview-agent"}
    return {
        path.relative_to(workspace).as_posix(): path.read_bytes()
        for path in sorted(workspace.rglob("*"))
        if path.relative_to(workspace).parts[0] not in skip and path.is_file()
    }


@pytest.fixture(scope="session")
def installed_templates() -> Path:
    """npm ci of both templates, once; a missing npm fails the suite rather than skipping it."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "sandbox.templates.install"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    print(f"template install: {time.monotonic() - started:.1f}s {done.stdout.strip()}")
    return TEMPLATES


@dataclass
class Machine:
    gateway: Gateway
    agent: AgentProcess


@contextlib.asynccontextmanager
async def template_machine(root: Path, template: str) -> AsyncIterator[Machine]:
    """One agent of `template` behind its own fake gateway, ready; stopped on exit."""
    gateway = Gateway(machine_id=f"loc-{template}")
    await gateway.start()
    agent = await start_agent(gateway, root / "workspace", root / "agent.log", template)
    try:
        await wait_ready(gateway)
        yield Machine(gateway, agent)
    finally:
        await agent.stop()
        await gateway.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def machine(
    installed_templates: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Machine]:
    root = tmp_path_factory.mktemp("machine")
    gateway = Gateway(machine_id="loc-shared")
    await gateway.start()
    started = time.monotonic()
    agent = await start_agent(gateway, root / "workspace", root / "agent.log")
    try:
        await wait_ready(gateway)
        print(f"boot to ready: {time.monotonic() - started:.2f}s")
        yield Machine(gateway, agent)
    finally:
        await agent.stop()
        await gateway.stop()


async def test_boots_ready_and_answers_health_through_its_front(machine: Machine) -> None:
    hello = machine.gateway.received[0]
    assert hello == {
        "v": 1,
        "type": "hello",
        "machineId": "loc-shared",
        "session": None,
        "appliedSeq": 0,
    }
    async with httpx.AsyncClient(base_url=machine.agent.url, trust_env=False) as http:
        health = await http.get("/healthz")
        page = await http.get("/", headers={"Accept": "text/html", "Host": "abc.preview.localhost"})
        state = await http.get("/.preview-agent/state.json")
        module = await http.get("/src/App.jsx")
    assert health.status_code == 200
    assert health.json() == {"status": "ready", "machine": "loc-shared"}
    assert page.status_code == 200
    assert 'src="/@id/virtual:preview-bridge"' in page.text  # the console bridge
    assert state.status_code == 403  # the agent's own files are not served
    assert module.status_code == 200 and "count is" in module.text
    workspace = machine.agent.workspace
    assert (workspace / "node_modules").is_symlink()
    assert (workspace / "node_modules").resolve() == (
        TEMPLATES / "react-web/node_modules"
    ).resolve()
    assert (workspace / ".vite" / "deps").is_dir()  # a cache of its own, inside the workspace


async def test_hmr_socket_passes_the_front_and_page_console_becomes_log(machine: Machine) -> None:
    mark = machine.gateway.mark()
    async with connect(
        f"ws://127.0.0.1:{machine.agent.port}/",
        subprotocols=[Subprotocol("vite-hmr")],
        proxy=None,
    ) as hmr:
        assert json.loads(await hmr.recv()) == {"type": "connected"}
        # What the injected bridge sends for console.warn in the page.
        await hmr.send(
            json.dumps(
                {
                    "type": "custom",
                    "event": "preview:console",
                    "data": {"level": "warn", "message": "careful from the page"},
                }
            )
        )
        log = await machine.gateway.expect("log", lambda m: m["source"] == "page", after=mark)
    assert log == {
        "v": 1,
        "type": "log",
        "level": "warn",
        "message": "careful from the page",
        "source": "page",
    }


async def test_hydrate_replaces_the_project_files(machine: Machine) -> None:
    gateway, workspace = machine.gateway, machine.agent.workspace
    files = {
        path: (workspace / path).read_text()
        for path in ("index.html", "package.json", "vite.config.js", "preview-plugin.js")
    }
    files["src/main.jsx"] = (workspace / "src/main.jsx").read_text()
    files["src/App.jsx"] = app_source("Hydrated")
    files["src/data/notes.txt"] = "kept"
    (workspace / "src/stray.js").write_text("export const stray = 1\n")
    mark = gateway.mark()

    await gateway.send({"type": "assign", "session": "sess-1"})
    # A warm machine's status concerned no session; the new session's editors hear it now.
    restated = await gateway.expect("status", after=mark)
    assert restated["state"] == "ready"
    await gateway.send(
        {"type": "hydrate", "session": "sess-1", "epoch": "e1", "seq": 3, "files": files}
    )

    await gateway.applied(3, after=mark)
    assert project_tree(workspace) == {path: text.encode() for path, text in files.items()}
    await wait_ready(gateway, after=mark)
    state = json.loads((workspace / ".preview-agent/state.json").read_text())
    assert state == {"session": "sess-1", "appliedSeq": 3, "epoch": "e1"}


async def test_patches_are_applied_in_order_exactly_once(machine: Machine) -> None:
    gateway, workspace = machine.gateway, machine.agent.workspace
    mark = gateway.mark()
    sent_at: dict[int, float] = {}
    for seq in range(4, 14):
        sent_at[seq] = time.monotonic()
        await gateway.patch(seq, [{"path": "src/App.jsx", "content": app_source(f"Edit {seq}")}])
        await asyncio.sleep(0.01)  # faster than typing
    await gateway.patch(14, [{"path": "src/data/notes.txt", "delete": True}])
    await gateway.patch(15, [{"path": "src/util/new.js", "content": "export const n = 15\n"}])

    await gateway.applied(15, after=mark)
    applied = [m["seq"] for m in gateway.since(mark, "applied")]
    assert applied == list(range(4, 16))
    assert (workspace / "src/App.jsx").read_text() == app_source("Edit 13")
    async with httpx.AsyncClient(trust_env=False) as http:
        served = await http.get(f"{machine.agent.url}/src/App.jsx")
    # Vite's watcher drops a second change of a file within 50 ms: the agent paces its writes
    # so that the dev server never keeps serving an older version.
    assert "Edit 13" in served.text
    assert not (workspace / "src/data/notes.txt").exists()
    assert (workspace / "src/util/new.js").read_text() == "export const n = 15\n"

    # One edit at a time: the latency the editor sees from patch to `applied`.
    mark = gateway.mark()
    started = time.monotonic()
    await gateway.patch(16, [{"path": "src/App.jsx", "content": app_source("Timed")}])
    await gateway.applied(16, after=mark)
    latency = time.monotonic() - started
    print(f"patch -> applied: {latency * 1000:.0f} ms")
    assert latency < 1.0  # well under the 2 s fallback: Vite itself confirmed it
    assert not [m for m in gateway.since(mark, "log") if "did not confirm" in m["message"]]


async def test_syntax_error_reports_build_error_then_recovers(machine: Machine) -> None:
    gateway = machine.gateway
    broken = app_source("Broken").replace("<h1 id=", "<h1 <id=")
    mark = gateway.mark()
    await gateway.patch(17, [{"path": "src/App.jsx", "content": broken}])

    await gateway.applied(17, after=mark)
    error = await gateway.expect("buildError", after=mark)
    assert error["file"] == "src/App.jsx"
    assert error["line"] == 7
    assert error["column"] > 0
    assert error["message"]
    await gateway.expect("status", lambda m: m["state"] == "error", after=mark)
    async with httpx.AsyncClient(trust_env=False) as http:
        health = await http.get(f"{machine.agent.url}/healthz")
    # The dev server still serves (the overlay shows the error): the machine is healthy.
    assert health.status_code == 200 and health.json()["status"] == "error"

    mark = gateway.mark()
    await gateway.patch(18, [{"path": "src/App.jsx", "content": app_source("Fixed")}])
    await gateway.applied(18, after=mark)
    await wait_ready(gateway, after=mark)


BAD_CHANGES = [
    ("../x", "invalid_path"),
    ("/etc/x", "invalid_path"),
    ("a/../../x", "invalid_path"),
    ("src//x.js", "invalid_path"),
    ("node_modules/x", "reserved_path"),
    (".preview-agent/state.json", "reserved_path"),
    ("src/linked/x.js", "symlink_escape"),
    ("src/bad\udcff.js", "invalid_path"),  # a lone surrogate: not UTF-8
    ("src/nul\u0000.js", "invalid_path"),
    ("src\\x.js", "invalid_path"),
]


async def test_bad_paths_and_sizes_are_rejected_and_nothing_is_written(
    machine: Machine, tmp_path: Path
) -> None:
    gateway, workspace = machine.gateway, machine.agent.workspace
    outside = tmp_path / "outside"
    outside.mkdir()
    (workspace / "src/linked").symlink_to(outside, target_is_directory=True)
    before = project_tree(workspace)
    shared_modules = sorted(p.name for p in (TEMPLATES / "react-web/node_modules").iterdir())
    state_before = (workspace / ".preview-agent/state.json").read_text()
    assert json.loads(state_before)["appliedSeq"] == 18
    good = {"path": "src/good.js", "content": "export const good = true\n"}
    cases = [([good, {"path": path, "content": "x"}], code) for path, code in BAD_CHANGES]
    cases += [
        ([{"path": "src/big.js", "content": "x" * (512 * 1024 + 1)}], "too_large"),
        ([good, {"path": "src/good.js/inner.js", "content": "x"}], "invalid_path"),
        ([{"path": "src/x.js"}], "invalid_change"),
    ]
    mark = gateway.mark()
    for seq, (changes, _) in enumerate(cases, start=19):
        await gateway.patch(seq, changes)

    last = 18 + len(cases)
    await gateway.expect("rejected", lambda m: m["seq"] == last, after=mark)
    rejected = gateway.since(mark, "rejected")
    assert [(m["seq"], m["code"]) for m in rejected] == [
        (seq, code) for seq, (_, code) in enumerate(cases, start=19)
    ]
    assert all(m["message"] for m in rejected)
    assert not gateway.since(mark, "applied")
    assert project_tree(workspace) == before  # not even src/good.js
    assert list(outside.iterdir()) == []
    assert (
        sorted(p.name for p in (TEMPLATES / "react-web/node_modules").iterdir()) == shared_modules
    )
    assert not Path("/etc/x").exists()
    # Refused patches consume their seq, so the stream goes on after them.
    (workspace / "src/linked").unlink()
    mark = gateway.mark()
    await gateway.patch(last + 1, [good])
    await gateway.applied(last + 1, after=mark)
    assert (workspace / "src/good.js").read_text() == good["content"]


async def test_a_gap_makes_the_agent_say_hello_again(machine: Machine) -> None:
    gateway = machine.gateway
    applied = json.loads((machine.agent.workspace / ".preview-agent/state.json").read_text())
    first = applied["appliedSeq"] + 1
    mark = gateway.mark()
    await gateway.patch(
        first, [{"path": "src/gap.js", "content": "export const a = 1\n"}], send=False
    )
    await gateway.patch(first + 1, [{"path": "src/gap.js", "content": "export const a = 2\n"}])

    hello = await gateway.expect("hello", after=mark)
    assert hello["appliedSeq"] == first - 1 and hello["session"] == "sess-1"
    await gateway.applied(first + 1, after=mark)  # the gateway resent both, in order
    assert [m["seq"] for m in gateway.since(mark, "applied")] == [first, first + 1]
    assert (machine.agent.workspace / "src/gap.js").read_text() == "export const a = 2\n"


async def test_a_new_epoch_keeps_the_files_and_counts_from_one(machine: Machine) -> None:
    # The session's edit log was lost with Redis and began again: the gateway assigns the same
    # session under a new epoch. The agent must apply the new log's seq 1 (not drop it as
    # "already applied"), and keep the files it has until the editor's re-sent files arrive.
    gateway, workspace = machine.gateway, machine.agent.workspace
    before = json.loads((workspace / ".preview-agent/state.json").read_text())
    assert before["appliedSeq"] > 1
    mark = gateway.mark()
    await gateway.send({"type": "assign", "session": "sess-1", "epoch": "e2"})
    await gateway.patch(1, [{"path": "src/epoch.js", "content": "export const e = 2\n"}])
    await gateway.applied(1, after=mark)
    assert (workspace / "src/epoch.js").read_text() == "export const e = 2\n"
    assert (workspace / "src/gap.js").read_text() == "export const a = 2\n"  # kept
    state = json.loads((workspace / ".preview-agent/state.json").read_text())
    assert state == {"session": "sess-1", "appliedSeq": 1, "epoch": "e2"}
    # The same epoch again changes nothing: seq 1 is not applied twice.
    await gateway.send({"type": "assign", "session": "sess-1", "epoch": "e2"})
    await gateway.patch(1, [{"path": "src/epoch.js", "content": "export const e = 3\n"}])
    await gateway.patch(2, [{"path": "src/epoch.js", "content": "export const e = 4\n"}])
    await gateway.applied(2, after=mark)
    assert [m["seq"] for m in gateway.since(mark, "applied")] == [1, 2]


async def test_reconnects_after_the_orchestrator_restarts(machine: Machine) -> None:
    gateway = machine.gateway
    applied = json.loads((machine.agent.workspace / ".preview-agent/state.json").read_text())
    await gateway.stop()
    mark = gateway.mark()
    await asyncio.sleep(0.5)
    await gateway.start()  # same port

    hello = await gateway.expect("hello", after=mark, timeout=15)
    assert hello["session"] == "sess-1" and hello["appliedSeq"] == applied["appliedSeq"]
    assert hello["epoch"] == applied["epoch"] == "e2"
    status = await gateway.expect("status", after=mark)
    assert status["state"] == "ready"


async def test_killed_agent_resumes_without_losing_or_repeating_a_patch(tmp_path: Path) -> None:
    gateway = Gateway(machine_id="loc-crash")
    await gateway.start()
    workspace = tmp_path / "workspace"
    agent = await start_agent(gateway, workspace, tmp_path / "agent.log")
    try:
        await wait_ready(gateway)
        await gateway.send({"type": "assign", "session": "sess-k"})

        def note(seq: int) -> list[dict[str, Any]]:
            return [{"path": f"src/notes/{seq}.txt", "content": f"note {seq}\n"}]

        for seq in range(1, 21):
            await gateway.patch(seq, note(seq))
        await gateway.applied(5)
        vite = agent.vite_pids()
        assert vite
        await agent.crash()  # mid-stream
        first_run = [m["seq"] for m in gateway.received if m["type"] == "applied"]
        for seq in range(21, 41):  # what the editor sent while the machine was down
            await gateway.patch(seq, note(seq), send=False)

        # Its dev server goes with it: Vite exits when the agent's end of its stdin closes.
        async with asyncio.timeout(10):
            while any(Path(f"/proc/{pid}").exists() for pid in vite):
                await asyncio.sleep(0.1)

        mark = gateway.mark()
        agent = await start_agent(gateway, workspace, tmp_path / "agent.log", port=agent.port)
        hello = await gateway.expect("hello", after=mark, timeout=BOOT_TIMEOUT)
        await gateway.applied(40, after=mark, timeout=BOOT_TIMEOUT)
    finally:
        await agent.stop()
        await gateway.stop()

    resumed_from = hello["appliedSeq"]
    assert hello["session"] == "sess-k"
    assert first_run == list(range(1, len(first_run) + 1))
    assert resumed_from >= first_run[-1]
    second_run = [m["seq"] for m in gateway.since(mark, "applied")]
    assert second_run == list(range(resumed_from + 1, 41))
    notes = sorted(int(p.stem) for p in (workspace / "src/notes").iterdir())
    assert notes == list(range(1, 41))
    state = json.loads((workspace / ".preview-agent/state.json").read_text())
    assert state == {"session": "sess-k", "appliedSeq": 40, "epoch": None}


async def test_react_native_web_template_boots_and_compiles(
    installed_templates: Path, tmp_path: Path
) -> None:
    gateway = Gateway(machine_id="loc-rnw")
    await gateway.start()
    agent = await start_agent(
        gateway, tmp_path / "workspace", tmp_path / "agent.log", "react-native-web"
    )
    try:
        await wait_ready(gateway)
        async with httpx.AsyncClient(base_url=agent.url, trust_env=False) as http:
            app = await http.get("/src/App.jsx")
            health = await http.get("/healthz")
    finally:
        await agent.stop()
        await gateway.stop()
    assert not gateway.since(0, "buildError")
    assert health.json() == {"status": "ready", "machine": "loc-rnw"}
    # react-native resolved to react-native-web's pre-bundled copy.
    assert "/.vite/deps/react-native.js" in app.text


async def test_local_provider_runs_the_agent_against_the_orchestrator(
    installed_templates: Path, tmp_path: Path
) -> None:
    gateway = Gateway(machine_id="")
    gateway.resend_on_hello = False
    await gateway.start()
    provider = LocalProvider(
        tmp_path / "machines", start_timeout=BOOT_TIMEOUT, orchestrator_ws_url=gateway.url
    )
    try:
        created = await provider.create(MachineSpec(template="react-web", region="local"))
        # The fake checks credentials: give it the ones the provider minted.
        gateway.machine_id, gateway.token = created.id, created.metadata["token"]
        machine = await provider.wait(created.id, MachineState.STARTED, BOOT_TIMEOUT)
        hello = await gateway.expect("hello")
    finally:
        for listed in await provider.list():
            await provider.destroy(listed.id)
        await provider.aclose()
        await gateway.stop()
    assert machine.healthy
    assert hello["machineId"] == created.id
