"""Dependency changes on the real agent, Vite and npm, behind the fake gateway of
test_sandbox_agent: a package added to package.json is installed into the workspace's own
node_modules (the shared install untouched), the dev server restarts onto it and the import
compiles; a package that does not exist is a `buildError` on package.json and the session goes
on; a dependency that is not a registry package is refused before npm runs; the image's common
packages install with the registry out of reach; a snapshot's dependencies are installed too; the
limits hold.

Two machines of the react-web template: `machine` reaches the registry (this host's npm
registry), `offline` is pointed at a registry nobody answers, with a small size limit.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from sandbox.agent.deps import InstallLimits, locate
from sandbox.agent.npm import npm_install
from tests.e2e.deps_app import (
    CLSX,
    LEFT_PAD,
    MISSING,
    adding,
    package_json,
    shared_install_fingerprint,
)
from tests.e2e.stack import app_source
from tests.integration.test_sandbox_agent import (
    TEMPLATES,
    Gateway,
    Machine,
    installed_templates,
    start_agent,
    wait_ready,
)

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

__all__ = ["installed_templates"]  # the fixture, shared with test_sandbox_agent

INSTALL_TIMEOUT = 90.0
UNREACHABLE_REGISTRY = "http://127.0.0.1:9/"
ENV = {"PATH": os.environ["PATH"]}


async def _boot(
    root: Path, name: str, env: dict[str, str] | None = None
) -> tuple[Gateway, Machine]:
    gateway = Gateway(machine_id=f"loc-{name}")
    await gateway.start()
    agent = await start_agent(gateway, root / "workspace", root / "agent.log", "react-web", env=env)
    await wait_ready(gateway)
    return gateway, Machine(gateway, agent)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def machine(
    installed_templates: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Machine]:
    gateway, booted = await _boot(tmp_path_factory.mktemp("deps-machine"), "deps")
    try:
        yield booted
    finally:
        await booted.agent.stop()
        await gateway.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def offline(
    installed_templates: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Machine]:
    env = {"PREVIEW_NPM_REGISTRY": UNREACHABLE_REGISTRY, "PREVIEW_DEPS_MAX_MB": "0.5"}
    gateway, booted = await _boot(tmp_path_factory.mktemp("deps-offline"), "offline", env)
    try:
        yield booted
    finally:
        await booted.agent.stop()
        await gateway.stop()


@pytest.fixture(scope="module")
def shared_before(installed_templates: Path) -> tuple[list[str], bytes]:
    return shared_install_fingerprint()


async def _served(machine: Machine, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=machine.agent.url, trust_env=False) as http:
        return await http.get(path)


def _dep_url(module: str, package: str) -> str:
    """The URL App.jsx's compiled module imports `package` from (Vite's pre-bundle)."""
    found = [line for line in module.splitlines() if f"/deps/{package}.js" in line]
    assert found, module
    return found[0].split('"')[1]


async def test_an_added_package_is_installed_and_its_import_compiles(
    machine: Machine, shared_before: tuple[list[str], bytes]
) -> None:
    gateway, workspace = machine.gateway, machine.agent.workspace
    name, spec = LEFT_PAD[:2]
    mark = gateway.mark()
    # One patch with both: the install comes before the write, so Vite never sees the import
    # without the package.
    await gateway.patch(1, adding(LEFT_PAD, "With a package"))
    building = await gateway.expect("status", lambda m: m["state"] == "building", after=mark)
    await gateway.applied(1, after=mark, timeout=INSTALL_TIMEOUT)
    await wait_ready(gateway, after=mark)

    assert f"+{name}@{spec}" in building["detail"]
    assert not gateway.since(mark, "buildError")
    # A planned restart, not a crash: no `error` on the way.
    assert "error" not in [m["state"] for m in gateway.since(mark, "status")]
    npm_lines = [m["message"] for m in gateway.since(mark, "log") if "npm: " in m["message"]]
    assert any(f"installed +{name}@{spec}" in line for line in npm_lines), npm_lines
    module = await _served(machine, "/src/App.jsx")
    bundle = await _served(machine, _dep_url(module.text, name))
    assert bundle.status_code == 200 and "leftPad" in bundle.text
    modules = workspace / "node_modules"
    assert not modules.is_symlink() and (modules / name / "package.json").is_file()
    assert (modules / "react").is_dir()  # the template's packages came along
    # The template's shared install, which every other machine uses, did not change.
    assert shared_install_fingerprint() == shared_before
    assert not (TEMPLATES / "react-web/node_modules" / name).exists()


async def test_a_missing_package_is_a_build_error_on_package_json_and_the_session_goes_on(
    machine: Machine,
) -> None:
    gateway, workspace = machine.gateway, machine.agent.workspace
    modules = workspace / "node_modules"
    stamp = (modules / ".preview-deps.json").read_bytes()
    broken = package_json(**{LEFT_PAD[0]: LEFT_PAD[1], MISSING: "^1.0.0"})
    mark = gateway.mark()
    await gateway.patch(2, [{"path": "package.json", "content": broken}])
    error = await gateway.expect("buildError", after=mark, timeout=INSTALL_TIMEOUT)
    await gateway.expect("status", lambda m: m["state"] == "error", after=mark)
    await gateway.applied(2, after=mark)

    assert error["file"] == "package.json"
    assert MISSING in error["message"] and "404" in error["message"]
    assert (error["line"], error["column"]) == locate(broken, MISSING)
    # The previous install stays, and package.json is the editor's all the same.
    assert (modules / ".preview-deps.json").read_bytes() == stamp
    assert not (modules / MISSING).exists()
    assert (workspace / "package.json").read_text() == broken

    # The session goes on: the next edit is applied, served, and the page loads again.
    mark = gateway.mark()
    await gateway.patch(3, [{"path": "src/App.jsx", "content": app_source("Still working")}])
    await gateway.applied(3, after=mark)
    await wait_ready(gateway, after=mark)
    assert "Still working" in (await _served(machine, "/src/App.jsx")).text

    # Taking the missing package out again installs nothing.
    mark = gateway.mark()
    fixed = package_json(**{LEFT_PAD[0]: LEFT_PAD[1]})
    await gateway.patch(4, [{"path": "package.json", "content": fixed}])
    await gateway.applied(4, after=mark)
    await asyncio.sleep(0.5)  # what a recheck of the page would report
    assert [m["state"] for m in gateway.since(mark, "status")] in ([], ["ready"])
    assert not gateway.since(mark, "buildError")


async def test_a_restarted_agent_keeps_its_install(machine: Machine) -> None:
    gateway, workspace = machine.gateway, machine.agent.workspace
    await machine.agent.crash()
    mark = gateway.mark()
    machine.agent = await start_agent(
        gateway, workspace, workspace.parent / "agent.log", "react-web"
    )
    await wait_ready(gateway, after=mark)
    assert (workspace / "node_modules" / LEFT_PAD[0]).is_dir()
    assert not [m for m in gateway.since(mark, "status") if "installing" in m["detail"]]


async def test_package_json_back_to_the_templates_returns_to_the_shared_install(
    machine: Machine, shared_before: tuple[list[str], bytes]
) -> None:
    gateway, workspace = machine.gateway, machine.agent.workspace
    mark = gateway.mark()
    await gateway.patch(
        5,
        [
            {"path": "package.json", "content": (TEMPLATES / "react-web/package.json").read_text()},
            {"path": "src/App.jsx", "content": app_source("Back to the template")},
        ],
    )
    await gateway.applied(5, after=mark, timeout=INSTALL_TIMEOUT)
    await wait_ready(gateway, after=mark)
    modules = workspace / "node_modules"
    assert modules.is_symlink()
    assert modules.resolve() == (TEMPLATES / "react-web/node_modules").resolve()
    assert not list((workspace / ".preview-agent/deps").glob("stage*"))
    assert shared_install_fingerprint() == shared_before


async def test_a_common_package_installs_with_the_registry_out_of_reach(
    offline: Machine,
) -> None:
    gateway, workspace = offline.gateway, offline.agent.workspace
    name = CLSX[0]
    mark = gateway.mark()
    await gateway.patch(1, adding(CLSX, "Offline"))
    await gateway.applied(1, after=mark, timeout=INSTALL_TIMEOUT)
    await wait_ready(gateway, after=mark)
    assert not gateway.since(mark, "buildError")
    module = await _served(offline, "/src/App.jsx")
    assert (await _served(offline, _dep_url(module.text, name))).status_code == 200
    installed = json.loads((workspace / "node_modules" / name / "package.json").read_text())
    locked = json.loads((TEMPLATES / "common-packages.lock.json").read_text())
    assert installed["version"] == locked["packages"][f"node_modules/{name}"]["version"]


async def test_offline_a_package_from_the_registry_fails_clearly(offline: Machine) -> None:
    gateway = offline.gateway
    name, spec = LEFT_PAD[:2]
    manifest = package_json(**{CLSX[0]: CLSX[1], name: spec})
    mark = gateway.mark()
    await gateway.patch(2, [{"path": "package.json", "content": manifest}])
    error = await gateway.expect("buildError", after=mark, timeout=INSTALL_TIMEOUT)
    await gateway.applied(2, after=mark)
    assert error["file"] == "package.json" and name in error["message"]
    assert error["line"] == locate(manifest, name)[0]
    assert (offline.agent.workspace / "node_modules" / CLSX[0]).is_dir()


async def test_a_file_dependency_is_refused_before_npm_runs(offline: Machine) -> None:
    gateway, modules = offline.gateway, offline.agent.workspace / "node_modules"
    before = sorted(p.name for p in modules.iterdir())
    manifest = package_json(**{CLSX[0]: CLSX[1], "etc": "file:../../../../etc"})
    mark = gateway.mark()
    await gateway.patch(3, [{"path": "package.json", "content": manifest}])
    error = await gateway.expect("buildError", after=mark)
    await gateway.applied(3, after=mark)
    assert "not a version from the registry" in error["message"]
    assert (error["line"], error["column"]) == locate(manifest, "etc")
    assert not [m for m in gateway.since(mark, "status") if m["state"] == "building"]
    assert sorted(p.name for p in modules.iterdir()) == before


async def test_an_install_over_the_size_limit_is_refused(offline: Machine) -> None:
    # lodash-es is a common package (no registry needed) of about 1.4 MB: over 0.5 MB.
    gateway = offline.gateway
    manifest = package_json(**{CLSX[0]: CLSX[1], "lodash-es": "^4.17.0"})
    mark = gateway.mark()
    await gateway.patch(4, [{"path": "package.json", "content": manifest}])
    error = await gateway.expect("buildError", after=mark, timeout=INSTALL_TIMEOUT)
    await gateway.applied(4, after=mark)
    assert "over the limit of 0.5 MiB" in error["message"]
    assert "lodash-es" in error["message"]
    assert not (offline.agent.workspace / "node_modules/lodash-es").exists()


async def test_a_hydrate_installs_the_snapshots_dependencies(offline: Machine) -> None:
    gateway, workspace = offline.gateway, offline.agent.workspace
    name = CLSX[0]
    files = {change["path"]: change["content"] for change in adding(CLSX, "Hydrated")}
    # Back to the template first, so the snapshot's install is a real one.
    mark = gateway.mark()
    template = (TEMPLATES / "react-web/package.json").read_text()
    await gateway.patch(5, [{"path": "package.json", "content": template}])
    await gateway.applied(5, after=mark, timeout=INSTALL_TIMEOUT)
    assert (workspace / "node_modules").is_symlink()

    mark = gateway.mark()
    await gateway.send({"type": "hydrate", "session": "s-deps", "seq": 7, "files": files})
    await gateway.applied(7, after=mark, timeout=INSTALL_TIMEOUT)
    await wait_ready(gateway, after=mark)
    assert (workspace / "node_modules" / name).is_dir()
    assert "Hydrated" in (await _served(offline, "/src/App.jsx")).text


async def test_npm_is_stopped_at_the_time_limit(tmp_path: Path) -> None:
    (tmp_path / "node_modules").mkdir()
    limits = InstallLimits(timeout=0.3, max_growth=10**9)
    started = asyncio.get_running_loop().time()
    result = await npm_install(["sleep", "30"], tmp_path, ENV, limits, 0, lambda line: None)
    assert not result.ok
    assert result.stopped == "npm install did not finish within 0.3 s"
    assert asyncio.get_running_loop().time() - started < 5


async def test_npm_is_stopped_when_node_modules_grows_past_the_limit(tmp_path: Path) -> None:
    (tmp_path / "node_modules").mkdir()
    grow = "head -c 3000000 /dev/zero > node_modules/big && echo grown && sleep 30"
    limits = InstallLimits(timeout=20, max_growth=1024 * 1024)
    lines: list[str] = []
    result = await npm_install(["sh", "-c", grow], tmp_path, ENV, limits, 0, lines.append)
    assert not result.ok and lines == ["grown"]
    assert result.stopped == "node_modules would grow by 2.9 MiB, over the limit of 1.0 MiB"
