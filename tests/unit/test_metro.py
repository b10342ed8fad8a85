"""The agent's Metro side without Metro: HMR rounds as events, Metro's errors as buildError
fields, the manifest rewrite, and which templates run Metro."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from sandbox.agent import expo_manifest, metro, toolchain
from sandbox.agent.hmr import CompileFailed, Connected, ModulesUpdated

ROOT = Path("/work/machine/workspace")


def _msg(kind: str, **body: object) -> str:
    return json.dumps({"type": kind, "body": body})


def test_a_round_that_compiles_is_one_update_at_its_end() -> None:
    rounds = metro.Rounds(ROOT)
    assert rounds.feed(json.dumps({"type": "bundle-registered"})) == Connected()
    assert rounds.feed(_msg("update-start", isInitialUpdate=False)) is None
    assert rounds.feed(_msg("update", modified=[], added=[], deleted=[])) is None
    assert rounds.feed(_msg("update-done")) == ModulesUpdated(())


def test_a_round_that_fails_is_its_error_and_no_update() -> None:
    rounds = metro.Rounds(ROOT)
    rounds.feed(_msg("update-start"))
    error = rounds.feed(
        _msg(
            "error",
            type="TransformError",
            filename="App.js",
            lineNumber=22,
            column=6,
            message="Error: /work/machine/workspace/App.js: Unexpected token (22:6)",
        )
    )
    assert error == CompileFailed(
        message="Error: /work/machine/workspace/App.js: Unexpected token (22:6)",
        file="App.js",
        line=22,
        column=7,
    )
    assert rounds.feed(_msg("update-done")) is None
    # The next round starts clean.
    rounds.feed(_msg("update-start"))
    assert rounds.feed(_msg("update-done")) == ModulesUpdated(())


def test_a_refused_registration_is_not_the_users_error() -> None:
    rounds = metro.Rounds(ROOT)
    assert rounds.feed(_msg("error", type="GraphNotFoundError", message="The graph ...")) is None


@pytest.mark.parametrize(
    "raw",
    ["", "not json", "[]", "42", json.dumps({"type": "error", "body": "text"}), '{"type": 1}'],
)
def test_garbage_from_the_socket_is_ignored(raw: str) -> None:
    assert metro.Rounds(ROOT).feed(raw) is None


def test_error_fields_absolute_names_and_missing_positions() -> None:
    absolute = metro.compile_error(
        {"filename": f"{ROOT}/src/a.js", "lineNumber": 3, "column": 0, "message": "\x1b[31mx"},
        ROOT,
    )
    assert (absolute.file, absolute.line, absolute.column, absolute.message) == (
        "src/a.js",
        3,
        1,
        "x",
    )
    bare = metro.compile_error({"type": "UnableToResolveError", "lineNumber": "7"}, ROOT)
    assert (bare.file, bare.line, bare.column, bare.message) == ("", 0, 0, "UnableToResolveError")


def test_the_bundle_is_found_in_expos_page() -> None:
    page = (
        '<div id="root"></div><script src="/index.bundle?platform=web&amp;dev=true'
        '&amp;hot=false" defer></script>'
    )
    assert metro.bundle_path(page) == "/index.bundle?platform=web&dev=true&hot=false"
    assert metro.bundle_path("<html></html>") == metro.DEFAULT_BUNDLE


def test_metro_runs_for_templates_whose_install_has_expos_cli(tmp_path: Path) -> None:
    assert toolchain.for_template(None) is toolchain.VITE
    assert toolchain.for_template(tmp_path) is toolchain.VITE
    cli = tmp_path / toolchain.EXPO_CLI
    cli.parent.mkdir(parents=True)
    cli.write_text("")
    assert toolchain.for_template(tmp_path) is toolchain.METRO
    argv = toolchain.METRO.argv("node", tmp_path, 4321, "--import=x")
    assert argv[:4] == ["node", "--import=x", str(cli), "start"]
    assert "--localhost" in argv and "4321" in argv
    # Expo CLI turns its watcher off under CI: the agent never sets it.
    assert "CI" not in toolchain.METRO.env


def test_manifest_requests_are_expo_gos_get_of_the_root() -> None:
    headers = [b"Host: h.example", b"Expo-Platform: ios"]
    assert expo_manifest.is_manifest_request(b"GET / HTTP/1.1", headers)
    assert expo_manifest.is_manifest_request(b"GET /?platform=ios HTTP/1.1", headers)
    assert not expo_manifest.is_manifest_request(b"GET /index.bundle HTTP/1.1", headers)
    assert not expo_manifest.is_manifest_request(b"POST / HTTP/1.1", headers)
    assert not expo_manifest.is_manifest_request(b"GET / HTTP/1.1", [b"Host: h.example"])
    # A header whose value merely mentions the name does not count.
    assert not expo_manifest.is_manifest_request(b"GET / HTTP/1.1", [b"X-Note: expo-platform"])


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (b"s.preview.localhost:8000", b"http://s.preview.localhost:8000/index.bundle"),
        (b"s.preview.example.com", b"http://s.preview.example.com/index.bundle"),
        (b"[::1]:8000", b"http://[::1]:8000/index.bundle"),
    ],
)
def test_the_rewrite_puts_back_the_clients_host(host: bytes, expected: bytes) -> None:
    hostname = host.rpartition(b":")[0] if host.rpartition(b":")[2].isdigit() else host
    body = (
        b'{"launchAsset":{"url":"http://' + hostname + b':51234/index.bundle"},'
        b'"hostUri":"' + hostname + b':51234"}'
    )
    rewritten = expo_manifest.rewrite(body, host, 51234)
    assert expected in rewritten
    assert b"51234" not in rewritten
    assert json.loads(rewritten)["hostUri"] == host.decode()


def test_the_rewrite_leaves_other_hosts_and_ports_alone() -> None:
    body = b'{"a":"http://other.example:51234/x","b":"http://h.example:9999/y"}'
    assert expo_manifest.rewrite(body, b"h.example", 51234) == body


def test_the_public_host_is_the_last_host_header() -> None:
    assert expo_manifest.public_host([b"Host: a", b"host: b"]) == b"b"
    assert expo_manifest.public_host([b"Accept: */*"]) is None


def test_a_manifest_answer_with_a_bare_line_break_is_refused() -> None:
    """The user's Metro config could answer the manifest with a head a lone LF splits
    differently for another parser (a hidden Fly-Replay): the front refuses it (502)."""

    async def run() -> None:
        async def metro_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\nX: 1\nFly-Replay: instance=x\r\nContent-Length: 2\r\n\r\n{}"
            )
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(metro_answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        headers = [b"Host: h.example", b"expo-platform: ios"]
        head = b"GET / HTTP/1.1\r\n" + b"\r\n".join(headers) + b"\r\n\r\n"
        try:
            with pytest.raises(ValueError, match="bare line break"):
                await expo_manifest.relay(None, head, headers, port)  # type: ignore[arg-type]
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(run())
