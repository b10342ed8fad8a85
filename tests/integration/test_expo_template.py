"""The expo template on the real agent and Metro (Expo CLI), behind the fake gateway of
test_sandbox_agent: boot to ready, `applied` from Metro's HMR rounds, Babel's errors as
`buildError` with file, line and column, the Expo manifest for iOS and Android with every URL
on the host the client asked for, bundles that hold the edited code, and Metro's HMR socket
pushing an update to a registered (phone-like) client after a patch. No phone is needed."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect

from sandbox.agent import metro
from tests.e2e.assets_app import binary_change, png
from tests.integration.test_sandbox_agent import (
    TEMPLATES,
    Machine,
    installed_templates,
    template_machine,
    wait_ready,
)

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

__all__ = ["installed_templates"]  # the fixture, shared with test_sandbox_agent

# The patches of this module's tests, in the order they run: one machine, one sequence.
SEQ = itertools.count(1)
PUBLIC_HOST = "0b6f4a52-8c1e-4a8e-9d57-2f1c0e6b7a10.preview.localhost:8123"


def app_source(title: str, *, broken: bool = False) -> str:
    # A syntax error on line 8: Babel stops at the `/` of `{</Text>`, 0-based column 14, which
    # the agent reports 1-based (15).
    middle = "      <Text>{</Text>" if broken else f'      <Text testID="title">{title}</Text>'
    return "\n".join(
        [
            "import { useState } from 'react';",
            "import { Pressable, Text, View } from 'react-native';",
            "",
            "export default function App() {",
            "  const [count, setCount] = useState(0);",
            "  return (",
            "    <View>",
            middle,
            "      <Pressable onPress={() => setCount(count + 1)}>",
            '        <Text testID="counter">count is {count}</Text>',
            "      </Pressable>",
            "    </View>",
            "  );",
            "}",
            "",
        ]
    )


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def machine(
    installed_templates: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Machine]:
    async with template_machine(tmp_path_factory.mktemp("expo-machine"), "expo") as booted:
        yield booted


def _timeouts(machine: Machine, after: int) -> list[str]:
    return [
        m["message"]
        for m in machine.gateway.since(after, "log")
        if "did not confirm" in m["message"]
    ]


async def _manifest(machine: Machine, platform: str) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=machine.agent.url, trust_env=False) as http:
        answer = await http.get(
            "/",
            headers={
                "Host": PUBLIC_HOST,
                "expo-platform": platform,
                "accept": "application/expo+json,application/json",
            },
            timeout=60,
        )
    assert answer.status_code == 200, answer.text[:500]
    manifest = answer.json()
    assert isinstance(manifest, dict)
    return manifest


async def _bundle_of(machine: Machine, manifest: dict[str, object]) -> str:
    launch = manifest["launchAsset"]
    assert isinstance(launch, dict)
    url = urlsplit(launch["url"])
    async with httpx.AsyncClient(base_url=machine.agent.url, trust_env=False) as http:
        bundle = await http.get(
            f"{url.path}?{url.query}", headers={"Host": url.netloc}, timeout=120
        )
    assert bundle.status_code == 200, bundle.text[:500]
    return bundle.text


async def test_boots_ready_and_serves_the_web_page_and_its_bundle(machine: Machine) -> None:
    async with httpx.AsyncClient(base_url=machine.agent.url, trust_env=False) as http:
        page = await http.get("/", headers={"Accept": "text/html"})
        health = await http.get("/healthz")
    assert not machine.gateway.since(0, "buildError")
    assert health.json() == {"status": "ready", "machine": "loc-expo"}
    assert "/__preview/render" in page.text  # the template's own index.html
    assert 'src="/index.bundle?platform=web' in page.text


@pytest.mark.parametrize("platform", ["ios", "android"])
async def test_the_manifest_names_the_clients_host_and_its_bundle_has_the_edit(
    machine: Machine, platform: str
) -> None:
    gateway = machine.gateway
    mark = gateway.mark()
    title = f"Native {platform}"
    seq = next(SEQ)
    await gateway.patch(seq, [{"path": "App.js", "content": app_source(title)}])
    await gateway.applied(seq, after=mark)

    manifest = await _manifest(machine, platform)
    launch = manifest["launchAsset"]
    assert isinstance(launch, dict)
    assert launch["url"].startswith(f"http://{PUBLIC_HOST}/index.bundle?platform={platform}")
    extra = manifest["extra"]
    assert isinstance(extra, dict)
    assert extra["expoClient"]["hostUri"] == PUBLIC_HOST
    assert extra["expoGo"]["debuggerHost"] == PUBLIC_HOST
    assert extra["expoClient"]["sdkVersion"].startswith("57.")
    # Nothing names Metro's internal port or address.
    text = json.dumps(manifest)
    assert set(re.findall(r"preview\.localhost:(\d+)", text)) == {"8123"}
    assert "127.0.0.1" not in text
    assert title in await _bundle_of(machine, manifest)


async def test_the_manifest_keeps_https_from_the_proxy(machine: Machine) -> None:
    async with httpx.AsyncClient(base_url=machine.agent.url, trust_env=False) as http:
        answer = await http.get(
            "/",
            headers={
                "Host": "abc.preview.example.com",
                "x-forwarded-proto": "https",
                "expo-platform": "android",
            },
            timeout=60,
        )
    url = answer.json()["launchAsset"]["url"]
    assert url.startswith("https://abc.preview.example.com/index.bundle?platform=android"), url


async def test_an_edit_is_applied_by_metros_round_and_reaches_a_registered_client(
    machine: Machine,
) -> None:
    gateway = machine.gateway
    manifest = await _manifest(machine, "ios")
    await _bundle_of(machine, manifest)  # the graph a phone would have
    launch = manifest["launchAsset"]
    assert isinstance(launch, dict)
    entry = launch["url"]
    port = urlsplit(machine.agent.url).port
    async with connect(
        f"ws://127.0.0.1:{port}/hot", proxy=None, max_size=None, open_timeout=10
    ) as phone:
        await phone.send(json.dumps({"type": "register-entrypoints", "entryPoints": [entry]}))
        await _next(phone, "bundle-registered")
        mark = gateway.mark()
        started = time.monotonic()
        seq = next(SEQ)
        await gateway.patch(seq, [{"path": "App.js", "content": app_source("Hot on the phone")}])
        await gateway.applied(seq, after=mark)
        latency = time.monotonic() - started
        update = await _next(phone, "update", lambda body: not body.get("isInitialUpdate"))
    assert "Hot on the phone" in json.dumps(update["body"]["modified"])
    assert latency < 1.5, latency  # Metro's round, not the 2 s fallback
    assert not _timeouts(machine, mark)


async def test_a_syntax_error_names_the_file_line_and_column_then_recovers(
    machine: Machine,
) -> None:
    gateway = machine.gateway
    mark = gateway.mark()
    seq = next(SEQ)
    await gateway.patch(seq, [{"path": "App.js", "content": app_source("x", broken=True)}])
    error = await gateway.expect("buildError", after=mark)
    await gateway.applied(seq, after=mark)
    await gateway.expect("status", lambda m: m["state"] == "error", after=mark)
    assert (error["file"], error["line"], error["column"]) == ("App.js", 8, 15)
    assert "Unexpected token" in error["message"]

    mark = gateway.mark()
    seq = next(SEQ)
    await gateway.patch(seq, [{"path": "App.js", "content": app_source("Fixed")}])
    await gateway.applied(seq, after=mark)
    await wait_ready(gateway, after=mark)


async def _next(
    socket: ClientConnection,
    kind: str,
    where: Callable[[dict[str, Any]], bool] = lambda body: True,
) -> dict[str, Any]:
    async with asyncio.timeout(30):
        async for raw in socket:
            message = json.loads(raw)
            body = message.get("body") or {}
            if message.get("type") == kind and where(body):
                return dict(message)
    raise AssertionError(f"the socket closed before {kind}")


async def test_an_image_sent_as_a_binary_patch_is_served_byte_identical_by_metro(
    machine: Machine,
) -> None:
    gateway = machine.gateway
    image = png(7, 5)
    source = (
        app_source("With an image")
        .replace(
            "import { Pressable, Text, View } from 'react-native';",
            "import { Image, Pressable, Text, View } from 'react-native';\n"
            "const dot = require('./assets/dot.png');",
        )
        .replace("    <View>\n", "    <View>\n      <Image source={dot} />\n")
    )
    mark = gateway.mark()
    seq = next(SEQ)
    await gateway.patch(
        seq,
        [binary_change("assets/dot.png", image), {"path": "App.js", "content": source}],
    )
    await gateway.applied(seq, after=mark)
    assert (machine.agent.workspace / "assets/dot.png").read_bytes() == image

    # The web bundle has the image as a module naming its URL and size; Metro serves it there.
    async with httpx.AsyncClient(base_url=machine.agent.url, trust_env=False) as http:
        bundle = await http.get(metro.DEFAULT_BUNDLE, timeout=120)
        found = re.search(r'uri: "(/assets/[^"]*dot\.png)",\s*width: 7,\s*height: 5', bundle.text)
        assert found is not None, "the image is not a module of the bundle"
        served = await http.get(found.group(1))
    assert served.status_code == 200
    assert served.content == image


async def test_a_dependency_added_to_package_json_is_installed_and_bundled(
    machine: Machine,
) -> None:
    """The installer is the same for every template; with Metro the dev server restarts onto
    the session's own node_modules (333 MB copied) and the bundle resolves the new package."""
    gateway = machine.gateway
    template = json.loads((TEMPLATES / "expo" / "package.json").read_text())
    template["dependencies"]["clsx"] = "^2.1.0"
    source = app_source("clsx is {clsx('a', { b: true })}").replace(
        "import { useState } from 'react';",
        "import { useState } from 'react';\nimport clsx from 'clsx';",
    )
    mark = gateway.mark()
    seq = next(SEQ)
    await gateway.patch(
        seq,
        [
            {"path": "package.json", "content": json.dumps(template, indent=2)},
            {"path": "App.js", "content": source},
        ],
    )
    await gateway.applied(seq, after=mark, timeout=180)
    await wait_ready(gateway, after=mark)
    assert not gateway.since(mark, "buildError")
    modules = machine.agent.workspace / "node_modules"
    assert not modules.is_symlink() and (modules / "clsx" / "package.json").is_file()
    async with httpx.AsyncClient(base_url=machine.agent.url, trust_env=False) as http:
        bundle = await http.get(metro.DEFAULT_BUNDLE, timeout=180)
    assert bundle.status_code == 200
    assert "node_modules/clsx/" in bundle.text
