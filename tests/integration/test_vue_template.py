"""The vue-web template on the real agent and Vite, behind the fake gateway of
test_sandbox_agent: `applied` as promptly as for React, and Vue SFC errors (the template
compiler's and Babel's for <script setup>) as `buildError` with the file and its position."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from tests.e2e.vue_app import (
    SCRIPT_LINE,
    TITLE_LINE,
    broken_script,
    broken_template,
    vue_app_source,
)
from tests.integration.test_sandbox_agent import (
    TEMPLATES,
    Machine,
    installed_templates,
    template_machine,
    wait_ready,
)

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

__all__ = ["installed_templates"]  # the fixture, shared with test_sandbox_agent


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def machine(
    installed_templates: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Machine]:
    async with template_machine(tmp_path_factory.mktemp("vue-machine"), "vue-web") as booted:
        yield booted


def _timeouts(machine: Machine, after: int) -> list[str]:
    """The agent's warnings that Vite never confirmed a write (`applied` by the fallback)."""
    return [
        m["message"]
        for m in machine.gateway.since(after, "log")
        if "did not confirm" in m["message"]
    ]


async def test_boots_ready_and_serves_the_compiled_sfc(machine: Machine) -> None:
    async with httpx.AsyncClient(base_url=machine.agent.url, trust_env=False) as http:
        page = await http.get("/", headers={"Accept": "text/html"})
        module = await http.get("/src/App.vue")
        health = await http.get("/healthz")
    assert not machine.gateway.since(0, "buildError")
    assert health.json() == {"status": "ready", "machine": "loc-vue-web"}
    assert 'src="/@id/virtual:preview-bridge"' in page.text
    # plugin-vue compiled the SFC into a module that accepts its own hot updates.
    assert module.status_code == 200 and "import.meta.hot.accept" in module.text
    assert (machine.agent.workspace / "node_modules").resolve() == (
        TEMPLATES / "vue-web/node_modules"
    ).resolve()


async def test_an_edit_is_applied_once_vite_took_it(machine: Machine) -> None:
    gateway = machine.gateway
    mark = gateway.mark()
    started = time.monotonic()
    await gateway.patch(1, [{"path": "src/App.vue", "content": vue_app_source("Edited")}])
    await gateway.applied(1, after=mark)
    latency = time.monotonic() - started
    async with httpx.AsyncClient(trust_env=False) as http:
        served = await http.get(f"{machine.agent.url}/src/App.vue")
    assert latency < 1.0, latency  # confirmed by Vite, not by the 2 s fallback
    assert not _timeouts(machine, mark)
    assert "Edited" in served.text


async def test_a_template_error_names_the_file_line_and_column(machine: Machine) -> None:
    gateway = machine.gateway
    source, column = broken_template("Broken")
    mark = gateway.mark()
    await gateway.patch(2, [{"path": "src/App.vue", "content": source}])
    error = await gateway.expect("buildError", after=mark)
    await gateway.applied(2, after=mark)
    await gateway.expect("status", lambda m: m["state"] == "error", after=mark)
    assert (error["file"], error["line"], error["column"]) == ("src/App.vue", TITLE_LINE, column)
    assert "end tag" in error["message"]

    mark = gateway.mark()
    await gateway.patch(3, [{"path": "src/App.vue", "content": vue_app_source("Fixed")}])
    await gateway.applied(3, after=mark)
    await wait_ready(gateway, after=mark)


async def test_a_script_error_is_applied_promptly_and_names_the_file(machine: Machine) -> None:
    # plugin-vue parses <script setup> in its hot-update hook, which then throws: Vite sends
    # the error without a module id, and skips the hooks after it.
    gateway = machine.gateway
    source, column = broken_script("Broken script")
    mark = gateway.mark()
    started = time.monotonic()
    await gateway.patch(4, [{"path": "src/App.vue", "content": source}])
    await gateway.applied(4, after=mark)
    latency = time.monotonic() - started
    error = await gateway.expect("buildError", after=mark)
    await gateway.expect("status", lambda m: m["state"] == "error", after=mark)
    assert (error["file"], error["line"], error["column"]) == ("src/App.vue", SCRIPT_LINE, column)
    assert latency < 1.0, latency
    assert not _timeouts(machine, mark)

    mark = gateway.mark()
    await gateway.patch(5, [{"path": "src/App.vue", "content": vue_app_source("Recovered")}])
    await gateway.applied(5, after=mark)
    await wait_ready(gateway, after=mark)
    assert not _timeouts(machine, mark)
