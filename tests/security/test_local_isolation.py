"""User code in a local machine cannot reach what is not its own (issue 9, finding 12).

The attack as it was found: a patch to `vite.config.js`, which Node runs whenever the dev
server (re)starts. Here the patched config runs `probe.py` (in the machine's workspace, as
Vite's child: exactly where any code of the user's runs) and the probe reports what it could
read and reach. Around it, the layout of `dev`: an orchestrator process holding secrets in its
environment and listening for agents, the token secret in the data directory, and a second
machine (another user's) with its own source and token.

The scenario runs once for the module (two real machines with the real agent and Vite); each
test checks one promise of docs/architecture.md, "Local machine isolation". Needs root, bwrap,
setpriv and a writable cgroup hierarchy, as CI has; elsewhere these tests fail rather than
skip, since a skipped isolation test would hide unconfined machines.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pool.core.provider import MachineSpec, MachineState
from pool.providers.local import LocalProvider
from tests.conftest import free_port

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BOOT_TIMEOUT = 60.0
REPORT_TIMEOUT = 60.0
PIDS_MAX = 64
LINGER = f"{600 + secrets.randbelow(1000)}.{secrets.randbelow(1000)}"  # seconds: its mark
SPAWN_ATTEMPTS = 2 * PIDS_MAX
POSTGRES, REDIS = ("127.0.0.1", 5432), ("127.0.0.1", 6379)

# The orchestrator stand-in: secrets in its environment, as `web` and `worker` have them, and
# a listener where agents connect (on every address, so the host's own IP reaches it too).
ORCHESTRATOR = r"""
import socket, sys, threading
server = socket.create_server(("0.0.0.0", int(sys.argv[1])), reuse_port=False)
print("ready", flush=True)
def hold(conn):
    with conn:
        while conn.recv(65536):
            pass
while True:
    conn, _ = server.accept()
    print("connection", flush=True)
    threading.Thread(target=hold, args=(conn,), daemon=True).start()
"""

VITE_CONFIG = """\
// The user's patch: Node runs this file whenever the dev server starts.
import { execFileSync } from 'node:child_process'
execFileSync(%s, ['probe.py'], { stdio: 'inherit' })
export default {}
"""

# What hostile code tries: every process's environment and command line it can see, every
# file under the data directory (whose path its own workspace path gives away), connections
# to the host's services and the other machine, and as many processes as it likes.
PROBE = r"""
import json, os, socket, subprocess, time
config = json.load(open("probe.json"))
report = {"environ": [], "cmdline": [], "files": {}, "connect": {}, "spawn": {}}
for pid in filter(str.isdigit, os.listdir("/proc")):
    for kind in ("environ", "cmdline"):
        try:
            report[kind].append(open(f"/proc/{pid}/{kind}", "rb").read().decode("utf-8", "replace"))
        except OSError:
            pass
for directory, dirs, files in os.walk(config["data_dir"]):
    dirs[:] = [d for d in dirs if d not in ("node_modules", ".vite")]
    for name in files:
        path = os.path.join(directory, name)
        try:
            report["files"][path] = open(path, "rb").read(65536).decode("utf-8", "replace")
        except OSError as exc:
            report["files"][path] = "unreadable: %s" % exc
for name, (host, port) in config["connect"].items():
    try:
        with socket.create_connection((host, port), timeout=2):
            report["connect"][name] = "ok"
    except OSError as exc:
        report["connect"][name] = "blocked: %s" % exc
children, errors = [], []
for _ in range(config["spawn"]):
    try:
        children.append(subprocess.Popen(["sleep", "30"]))
    except OSError as exc:
        errors.append(str(exc))
for child in children:
    child.kill()
    child.wait()
report["spawn"] = {"started": len(children), "refused": len(errors), "errors": errors[:3]}
# A process that leaves the machine's process group, meant to outlive the machine.
subprocess.Popen(["sleep", config["linger"]], start_new_session=True)
with open("report.json.tmp", "w") as out:
    json.dump(report, out)
os.rename("report.json.tmp", "report.json")
"""


@dataclasses.dataclass(frozen=True)
class Findings:
    report: dict[str, Any]
    canaries: dict[str, str]
    tokens: dict[str, str]
    host_cmdlines: list[str]
    host_environs: list[str]
    survivors: list[str]  # processes of the machines still there after they were destroyed
    connections: int  # to the orchestrator, counted once it has stopped


def _host_address() -> str:
    """This host's own non-loopback address (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))
        address: str = probe.getsockname()[0]
    return address


def _processes(kind: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((entry / kind).read_bytes().decode("utf-8", "replace"))
            except OSError:
                continue
    return found


async def _wait_for(path: Path, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"no {path.name}; machine log:\n{log.read_text()}"
        await asyncio.sleep(0.1)


async def _attack(
    data_dir: Path, orchestrator_url: str, canaries: dict[str, str], host_ip: str, gw: int
) -> Findings:
    provider = LocalProvider(
        data_dir, start_timeout=BOOT_TIMEOUT, orchestrator_ws_url=orchestrator_url,
        pids_max=PIDS_MAX,
    )  # fmt: skip
    spec = MachineSpec(template="react-web", region="local")
    try:
        attacker, victim = [await provider.create(spec) for _ in range(2)]
        for machine in (attacker, victim):
            await provider.wait(machine.id, MachineState.STARTED, BOOT_TIMEOUT)
        victim_source = Path(victim.metadata["workspace"]) / "src" / "secret.js"
        victim_source.write_text(f"export const key = '{canaries['source']}'\n")

        # The patch: applied while the machine is stopped, so the next boot runs it.
        await provider.stop(attacker.id)
        workspace = Path(attacker.metadata["workspace"])
        victim_port = int(victim.address.rsplit(":", 1)[1])
        (workspace / "probe.json").write_text(
            json.dumps(
                {
                    "data_dir": str(data_dir),
                    "connect": {
                        "orchestrator": ["127.0.0.1", gw],
                        "postgres": POSTGRES,
                        "redis": REDIS,
                        "sibling": ["127.0.0.1", victim_port],
                        "host_address": [host_ip, gw],
                    },
                    "spawn": SPAWN_ATTEMPTS,
                    "linger": LINGER,
                }
            )
        )
        (workspace / "probe.py").write_text(PROBE)
        (workspace / "vite.config.js").write_text(VITE_CONFIG % json.dumps(sys.executable))
        await provider.start(attacker.id)
        await _wait_for(workspace / "report.json", REPORT_TIMEOUT, data_dir / "machines" /
                        attacker.id / "machine.log")  # fmt: skip
        # While both machines run: what any process on the host shows.
        host_cmdlines, host_environs = _processes("cmdline"), _processes("environ")
        report = json.loads((workspace / "report.json").read_text())
        tokens = {
            "attacker": (await provider.get(attacker.id)).metadata["token"],
            "victim": (await provider.get(victim.id)).metadata["token"],
        }
    finally:
        for machine in await provider.list():
            await provider.destroy(machine.id)
        await provider.aclose()
    survivors = [c for c in _processes("cmdline") if c.startswith(f"sleep\0{LINGER}")]
    return Findings(
        report, canaries, tokens, host_cmdlines, host_environs, survivors, connections=0
    )


@pytest.fixture(scope="module")
def findings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Findings]:
    canaries = {
        name: f"canary-{name}-{secrets.token_hex(8)}"
        for name in ("jwt", "database", "token_secret_env", "token_secret_file", "source")
    }
    data_dir = tmp_path_factory.mktemp("isolation") / "data"
    data_dir.mkdir()
    # As `dev` keeps its generated secrets (app/cli.py: _dev_secret).
    secret_file = data_dir / "preview_token_secret.txt"
    secret_file.write_text(canaries["token_secret_file"])
    secret_file.chmod(0o600)
    gw = free_port()
    orchestrator = subprocess.Popen(
        [sys.executable, "-c", ORCHESTRATOR, str(gw)],
        env={
            "PATH": os.environ["PATH"],
            "SUPABASE_JWT_SECRET": canaries["jwt"],
            "DATABASE_URL": f"postgresql://postgres:{canaries['database']}@127.0.0.1/db",
            "PREVIEW_TOKEN_SECRET": canaries["token_secret_env"],
        },
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert orchestrator.stdout is not None
        assert orchestrator.stdout.readline().strip() == "ready"
        result = asyncio.run(
            _attack(data_dir, f"ws://127.0.0.1:{gw}/api/sandbox/ws", canaries, _host_address(), gw)
        )
    finally:
        orchestrator.kill()
        output, _ = orchestrator.communicate(timeout=10)
    yield dataclasses.replace(result, connections=output.count("connection"))


def _leaks(text: str, findings: Findings) -> list[str]:
    secrets_ = {**findings.canaries, **{f"token:{k}": v for k, v in findings.tokens.items()}}
    return [name for name, value in secrets_.items() if value in text]


def test_user_code_cannot_read_the_orchestrators_environment(findings: Findings) -> None:
    environ = "\n".join(findings.report["environ"])
    # The probe did read environments: its own and its machine's processes'.
    assert "PATH=" in environ
    assert _leaks(environ, findings) == []


def test_user_code_cannot_read_the_token_secret_or_another_machines_files(
    findings: Findings,
) -> None:
    files = findings.report["files"]
    # It walked what it could see of the data directory: its own workspace.
    assert any(path.endswith("/probe.py") for path in files), sorted(files)
    shown = "\n".join(f"{path}\n{content}" for path, content in files.items())
    assert _leaks(shown, findings) == []
    assert not [p for p in files if p.endswith(("machine.json", "preview_token_secret.txt"))]


def test_no_command_line_shows_a_machine_token(findings: Findings) -> None:
    assert _leaks("\n".join(findings.report["cmdline"]), findings) == []
    # Nor does any process of the host, in its command line or its environment.
    host = "\n".join(findings.host_cmdlines + findings.host_environs)
    assert [name for name in _leaks(host, findings) if name.startswith("token:")] == []


def test_the_cgroup_bounds_the_number_of_processes(findings: Findings) -> None:
    spawn = findings.report["spawn"]
    assert spawn["refused"] > 0, spawn
    assert spawn["started"] < PIDS_MAX, spawn
    assert any("Resource temporarily unavailable" in error for error in spawn["errors"]), spawn


def test_egress_reaches_the_orchestrator_and_nothing_else(findings: Findings) -> None:
    connect = findings.report["connect"]
    assert connect["orchestrator"] == "ok", connect
    # The agent itself got through too (its sandbox socket, through the forward).
    assert findings.connections >= 2
    for name in ("postgres", "redis", "sibling", "host_address"):
        assert connect[name].startswith("blocked"), connect


async def test_unconfined_machines_still_keep_the_token_off_command_lines(tmp_path: Path) -> None:
    # Where the host allows no sandbox (isolate=False stands in for it), the agent still gets
    # its token through a pipe only.
    provider = LocalProvider(
        tmp_path,
        start_timeout=BOOT_TIMEOUT,
        orchestrator_ws_url=f"ws://127.0.0.1:{free_port()}/api/sandbox/ws",
        isolate=False,
    )
    try:
        machine = await provider.create(MachineSpec(template="react-web", region="local"))
        await provider.wait(machine.id, MachineState.STARTED, BOOT_TIMEOUT)
        shown = _processes("cmdline") + _processes("environ")
        assert [text for text in shown if machine.metadata["token"] in text] == []
    finally:
        for listed in await provider.list():
            await provider.destroy(listed.id)
        await provider.aclose()


def test_nothing_of_a_machine_outlives_it(findings: Findings) -> None:
    # The probe started a process in a session of its own, out of the machine's process group.
    assert findings.report["spawn"]["started"] > 0
    assert findings.survivors == []
