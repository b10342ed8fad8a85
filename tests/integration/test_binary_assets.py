"""Binary files end to end below the browser (docs/protocol.md, "Binary files"): the edit log on
the real Redis keeps them binary (and counts them as stored); the real gateway takes a base64
change, refuses malformed ones, and hands `binary` on in `snapshot` and `hydrate`; and the real
agent behind the real gateway writes the bytes, which its Vite then serves byte-identical."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.sync.client import connect as sync_connect

from app.settings import Settings
from pool.edits.edit_log import (
    BINARY_MARK,
    Appended,
    Change,
    Conflict,
    EditLog,
    EditLogLimits,
    TooLarge,
    announce_end,
    push_snapshot,
)
from pool.edits.restored_log import start_log_from
from pool.store.redis_errors import resolved
from tests.conftest import REDIS_URL
from tests.e2e.assets_app import (
    IMPORTED,
    PUBLIC,
    PUBLIC_URL,
    assets_app_source,
    binary_change,
    png,
)
from tests.integration.test_gateway import (
    MACHINE_TOKEN,
    Server,
    leased,
    leased_session,
    receive_until,
    send,
)
from tests.integration.test_sandbox_agent import (
    BOOT_TIMEOUT,
    Gateway,
    installed_templates,
    start_agent,
)

__all__ = ["installed_templates", "leased"]  # fixtures of test_sandbox_agent, test_gateway


PIXEL = png(3, 2)
PIXEL_B64 = base64.b64encode(PIXEL).decode()


# -- the edit log --------------------------------------------------------------------------------


async def test_the_log_keeps_a_binary_file_binary_and_counts_what_it_stores(
    redis_client: Redis,
) -> None:
    edits = EditLog(redis_client)
    logo = Change("assets/logo.png", PIXEL_B64, binary=True)
    assert await edits.append("s1", 1, [logo, Change("a.js", "x")]) == Appended(1, False)

    stored = await resolved(redis_client.hget("po:snap:s1", "assets/logo.png"))
    assert stored == BINARY_MARK + PIXEL_B64
    # The snapshot's size is what Redis holds: the mark and the base64, not the decoded bytes.
    size = int(await resolved(redis_client.hget("po:snapmeta:s1", "bytes")) or 0)
    assert size == len(BINARY_MARK) + len(PIXEL_B64) + 1
    snapshot = await edits.snapshot("s1")
    assert snapshot.files == {"assets/logo.png": PIXEL_B64, "a.js": "x"}
    assert snapshot.binary == ["assets/logo.png"]
    # The stream keeps the change as sent, so catching up hands the encoding on.
    patches = await edits.since("s1", 0)
    assert patches is not None
    assert patches[0].changes[0] == binary_change("assets/logo.png", PIXEL)

    # A resend is recognised; the same characters as text are another patch.
    assert await edits.append("s1", 1, [logo, Change("a.js", "x")]) == Appended(1, True)
    as_text = Change("assets/logo.png", PIXEL_B64)
    assert await edits.append("s1", 1, [as_text, Change("a.js", "x")]) == Conflict(1)

    # Written over as text, it is text again; deleted, a tombstone.
    await edits.append("s1", 2, [as_text])
    assert (await edits.snapshot("s1")).binary == []
    await edits.append("s1", 3, [Change("assets/logo.png", None)])
    snapshot = await edits.snapshot("s1")
    assert (snapshot.deleted, snapshot.binary) == (["assets/logo.png"], [])


async def test_the_snapshot_cap_counts_base64_not_decoded_bytes(redis_client: Redis) -> None:
    edits = EditLog(redis_client, limits=EditLogLimits(snapshot_bytes=1000))
    # 700 + 60 bytes decoded would fit; 936 + 80 of base64 (and the marks) do not.
    first = Change("a.bin", base64.b64encode(bytes(700)).decode(), binary=True)
    assert await edits.append("s1", 1, [first]) == Appended(1, False)
    second = Change("b.bin", base64.b64encode(bytes(60)).decode(), binary=True)
    assert await edits.append("s1", 2, [second]) == TooLarge(936 + 80 + 2 * len(BINARY_MARK))
    assert (await edits.snapshot("s1")).files.keys() == {"a.bin"}  # nothing changed


async def test_an_ended_sessions_values_restore_binary_files_as_binary(redis_client: Redis) -> None:
    # The kept values are copied verbatim (pool.services.project_files): a binary file must
    # come back binary in the new session's snapshot.
    edits = EditLog(redis_client)
    await edits.append("old", 1, [Change("logo.png", PIXEL_B64, binary=True)])
    ended = await announce_end(redis_client, "old", "deleted", "ended")
    assert ended.values == {"logo.png": BINARY_MARK + PIXEL_B64}
    await start_log_from(redis_client, "new", ended.values)
    snapshot = await edits.snapshot("new")
    assert (snapshot.files, snapshot.binary) == ({"logo.png": PIXEL_B64}, ["logo.png"])


# -- the gateway, with a simulated agent -----------------------------------------------------------


@pytest.fixture
def leased_small_stream(settings: Settings) -> Iterator[tuple[Server, dict[str, Any], str]]:
    """A leased session whose stream holds 1 MiB: two big patches and the first is trimmed."""
    tuned = settings.model_copy(update={"preview_edit_stream_bytes": 1024 * 1024})
    with leased_session(tuned) as running:
        yield running


def test_the_gateway_relays_binary_and_names_it_in_snapshot_and_hydrate(
    leased_small_stream: Any,
) -> None:
    server, session, machine = leased_small_stream
    big = bytes(range(256)) * 2000  # 512,000 bytes: 682,668 of base64
    # A hydrate is over the editor's 1 MiB frame cap: the agent takes up to 64 MiB.
    agent_socket = sync_connect(
        f"ws://{server.host}/api/sandbox/ws",
        additional_headers={"authorization": f"Bearer {MACHINE_TOKEN}", "x-machine-id": machine},
        max_size=64 * 1024 * 1024,
    )
    with agent_socket as agent, server.editor(session) as editor:
        send(agent, "hello", machineId=machine, session=None, appliedSeq=0)
        epoch = receive_until(agent, "assign")["epoch"]
        send(editor, "hello", lastSeq=0)
        receive_until(editor, "welcome")
        send(editor, "patch", seq=1, changes=[binary_change("assets/big.bin", big)])
        assert receive_until(editor, "ack")["seq"] == 1
        relayed = receive_until(agent, "patch")
        assert relayed["changes"] == [binary_change("assets/big.bin", big)]
        changes = [binary_change("assets/logo.png", PIXEL), binary_change("assets/other.bin", big)]
        send(editor, "patch", seq=2, changes=changes)
        assert receive_until(editor, "ack")["seq"] == 2

        # The hydrate job's snapshot reaches the agent with its binary files named.
        async def hydrate() -> None:
            client: Redis = Redis.from_url(REDIS_URL, decode_responses=True)
            try:
                await push_snapshot(EditLog(client), session["id"], machine)
            finally:
                await client.aclose()

        asyncio.run(hydrate())
        hydrated = receive_until(agent, "hydrate")
    assert (hydrated["seq"], hydrated["epoch"]) == (2, epoch)
    assert sorted(hydrated["binary"]) == ["assets/big.bin", "assets/logo.png", "assets/other.bin"]
    assert base64.b64decode(hydrated["files"]["assets/logo.png"]) == PIXEL

    # Patch 1 was trimmed (the stream holds 1 MiB): a new editor gets a snapshot, with `binary`.
    with server.editor(session, max_size=None) as late:
        send(late, "hello", lastSeq=0)
        snapshot = receive_until(late, "snapshot")
    assert snapshot["seq"] == 2
    assert sorted(snapshot["binary"]) == sorted(hydrated["binary"])
    assert base64.b64decode(snapshot["files"]["assets/big.bin"]) == big


def _patch(change: dict[str, Any]) -> str:
    return json.dumps({"v": 1, "type": "patch", "seq": 1, "changes": [change]})


HOSTILE = [
    _patch({"path": "a.png", "content": "QQ=", "encoding": "base64"}),
    _patch({"path": "a.png", "content": "QQ==\n", "encoding": "base64"}),
    _patch({"path": "a.png", "content": "QR==", "encoding": "base64"}),
    _patch({"path": "a.png", "content": "QQ==", "encoding": "gzip"}),
    _patch({"path": "a.png", "delete": True, "encoding": "base64"}),
    _patch({"path": "a.png", "content": "A" * 699_056, "encoding": "base64"}),
    _patch({"path": "a.png", "content": "\x89PNG\x00"}),  # raw bytes as text: NUL
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_malformed_binary_changes_get_an_error_and_change_nothing(
    leased_small_stream: Any, text: str
) -> None:
    server, session, _ = leased_small_stream
    with server.editor(session) as editor:
        send(editor, "hello", lastSeq=0)
        receive_until(editor, "welcome")
        editor.send(text)
        assert receive_until(editor, "error")["code"] == "invalid_frame"
        send(editor, "hello", lastSeq=0)
        assert receive_until(editor, "welcome")["head"] == 0  # nothing was appended


# -- the real agent behind the real gateway --------------------------------------------------------


async def _frame(editor: ClientConnection, kind: str, where: Any = lambda f: True) -> Any:
    async with asyncio.timeout(BOOT_TIMEOUT):
        while True:
            frame = json.loads(await editor.recv())
            if frame["type"] == kind and where(frame):
                return frame


@pytest.mark.slow
async def test_the_agent_writes_the_bytes_and_vite_serves_them_identical(
    leased: Any, installed_templates: Path, tmp_path: Path
) -> None:
    server, session, machine = leased
    # The agent dials the live gateway with the machine's id and token.
    port = int(server.host.split(":")[1])
    gateway = Gateway(machine_id=machine, token=MACHINE_TOKEN, port=port)
    workspace = tmp_path / "workspace"
    agent = await start_agent(gateway, workspace, tmp_path / "agent.log")
    url = f"ws://{server.host}/api/preview/sessions/{session['id']}/ws?token={session['token']}"
    try:
        async with connect(url) as editor:
            await editor.send(json.dumps({"v": 1, "type": "hello", "lastSeq": 0}))
            await _frame(editor, "status", lambda f: f["state"] == "ready")
            changes = [
                binary_change(IMPORTED, PIXEL),
                binary_change(PUBLIC, PIXEL),
                binary_change("public/fonts/empty.woff2", b""),
                {"path": "src/App.jsx", "content": assets_app_source("With images")},
            ]
            await editor.send(json.dumps({"v": 1, "type": "patch", "seq": 1, "changes": changes}))
            await _frame(editor, "applied", lambda f: f["seq"] == 1)
            async with httpx.AsyncClient(base_url=agent.url, trust_env=False) as http:
                served = await http.get(f"/{IMPORTED}")
                module = await http.get("/src/App.jsx")
                public = await http.get(PUBLIC_URL)
                empty = await http.get("/fonts/empty.woff2")
            assert (workspace / IMPORTED).read_bytes() == PIXEL
            assert served.status_code == 200 and served.content == PIXEL
            assert served.headers["content-type"] == "image/png"
            assert f"/{IMPORTED}" in module.text  # Vite resolved the import
            assert public.status_code == 200 and public.content == PIXEL
            assert empty.status_code == 200 and empty.content == b""

            # A hydrate puts the bytes back from the snapshot (as a new machine gets them).
            (workspace / IMPORTED).write_bytes(b"not a png")
            client: Redis = Redis.from_url(REDIS_URL, decode_responses=True)
            try:
                await push_snapshot(EditLog(client), session["id"], machine)
            finally:
                await client.aclose()
            async with asyncio.timeout(BOOT_TIMEOUT):
                while (workspace / IMPORTED).read_bytes() != PIXEL:
                    await asyncio.sleep(0.05)
    finally:
        await agent.stop()
