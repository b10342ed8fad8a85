"""The sandbox agent's pure decisions: acks, write pacing, backoff, rate limits, parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.agent.acks import Ack, AckTracker
from sandbox.agent.backoff import TokenBucket, backoff_delay
from sandbox.agent.errors import FrameError
from sandbox.agent.hmr import (
    CompileFailed,
    Connected,
    FileChanged,
    ModulesUpdated,
    PageReloaded,
    compile_error,
    parse_message,
)
from sandbox.agent.logs import page_message
from sandbox.agent.pacing import WritePacer
from sandbox.agent.probe import entry_scripts, module_imports, parse_response
from sandbox.agent.protocol import Assign, Hydrate, Patch, Ping, parse_server_frame

ROOT = Path("/srv/workspace")


def test_acks_wait_for_every_path_and_keep_seq_order() -> None:
    acks = AckTracker(timeout=2.0)
    assert acks.add(1, ["src/a.js", "src/b.js"], now=0.0) == []
    assert acks.add(2, ["src/c.js"], now=0.1) == []
    assert acks.file_changed("src/c.js") == []  # 2 is done, but 1 is not
    assert acks.file_changed("src/a.js") == []
    assert acks.file_changed("src/b.js") == [Ack(1), Ack(2)]


def test_a_write_that_changed_nothing_is_acked_in_its_turn() -> None:
    acks = AckTracker(timeout=2.0)
    assert acks.add(1, [], now=0.0) == [Ack(1)]
    acks.add(2, ["a"], now=0.0)
    assert acks.add(3, [], now=0.0) == []
    assert acks.file_changed("a") == [Ack(2), Ack(3)]


def test_unconfirmed_writes_are_acked_at_the_deadline_and_flagged() -> None:
    acks = AckTracker(timeout=2.0)
    acks.add(1, ["a"], now=10.0)
    acks.add(2, ["b"], now=10.5)
    acks.file_changed("b")
    assert acks.next_deadline() == 12.0
    assert acks.expire(now=11.9) == []
    assert acks.expire(now=12.0) == [Ack(1, timed_out=True), Ack(2)]
    assert acks.next_deadline() is None


def test_hmr_messages_ack_only_when_vite_does_not_announce_changes() -> None:
    acks = AckTracker(timeout=2.0)
    acks.add(1, ["a"], now=0.0)
    assert acks.dev_server_message() == [Ack(1)]  # no announcements seen: take any message
    acks.add(2, ["b"], now=0.0)
    acks.file_changed("b")
    acks.add(3, ["c"], now=0.0)
    assert acks.dev_server_message() == []  # the plugin announces: wait for its word
    assert acks.confirm_all() == [Ack(3)]  # Vite restarted and read everything


def test_pacing_waits_for_the_report_then_the_watcher_throttle() -> None:
    pacer = WritePacer(window=0.06, patience=2.0)
    assert pacer.ready_at(["a"]) == 0.0
    pacer.wrote(["a"], now=1.0)
    assert pacer.ready_at(["a"]) == pytest.approx(1.06)  # no report ever seen: a fixed gap
    pacer.reported("a", now=1.01)
    pacer.wrote(["a"], now=1.1)
    assert pacer.ready_at(["a", "b"]) == pytest.approx(3.1)  # until reported (or patience)
    pacer.reported("a", now=1.12)
    assert pacer.ready_at(["a"]) == pytest.approx(1.18)
    assert pacer.ready_at(["b"]) == 0.0
    pacer.reset()
    assert pacer.ready_at(["a"]) == 0.0


@pytest.mark.parametrize(
    ("attempt", "jitter", "delay"),
    [(0, 0.0, 0.2), (1, 0.0, 0.4), (3, 0.0, 1.6), (6, 0.0, 10.0), (500, 0.0, 10.0), (2, 0.5, 0.4)],
)
def test_backoff(attempt: int, jitter: float, delay: float) -> None:
    assert backoff_delay(attempt, base=0.2, cap=10.0, jitter=jitter) == pytest.approx(delay)


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=10, burst=3)
    assert [bucket.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.allow(0.05)
    assert bucket.allow(0.1)


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (
            {
                "message": "Transform failed\n\n[PARSE_ERROR] Expected `>`\n"
                " ╭─[ src/App.jsx?t=5:7:11 ]",
                "id": "/srv/workspace/src/App.jsx?t=5",
            },
            ("src/App.jsx", 7, 11),
        ),
        (
            {"message": "boom", "loc": {"file": "/srv/workspace/src/a.ts", "line": 3, "column": 0}},
            ("src/a.ts", 3, 1),
        ),
        # plugin-vue: the Vue compiler's 1-based column, as Vite sends it for `</h2>` at 9:26.
        (
            {
                "message": "Invalid end tag.",
                "id": "/srv/workspace/src/App.vue",
                "plugin": "vite:vue",
                "loc": {"file": "/srv/workspace/src/App.vue", "line": 9, "column": 26},
            },
            ("src/App.vue", 9, 26),
        ),
        # Babel's error for a <script> block (0-based column), from a module request ...
        (
            {
                "message": "[vue/compiler-sfc] Unexpected token (5:6)\n\n"
                "/srv/workspace/src/App.vue",
                "id": "/srv/workspace/src/App.vue?t=1",
                "plugin": "vite:vue",
                "loc": {"line": 5, "column": 6, "index": 55},
            },
            ("src/App.vue", 5, 7),
        ),
        # ... and from plugin-vue's hot-update hook: no id, the file only in the message.
        (
            {
                "message": "[vue/compiler-sfc] Unexpected token (5:6)\n\n/srv/workspace/src/App.vue"
                "\n5  |  const = 5",
                "loc": {"line": 5, "column": 6, "index": 55},
            },
            ("src/App.vue", 5, 7),
        ),
        ({"message": "failed in /srv/workspace-other/a.js", "loc": {"line": 2}}, ("", 2, 0)),
        ({"message": "\x1b[31mred\x1b[0m"}, ("", 0, 0)),
        ({"message": "x", "id": "/elsewhere/lib.js"}, ("/elsewhere/lib.js", 0, 0)),
    ],
)
def test_compile_errors_name_a_workspace_file_and_position(
    err: dict[str, object], expected: tuple[str, int, int]
) -> None:
    error = compile_error(err, ROOT)
    assert (error.file, error.line, error.column) == expected
    assert "\x1b" not in error.message


@pytest.mark.parametrize(
    ("raw", "event"),
    [
        ('{"type":"connected"}', Connected()),
        (
            '{"type":"custom","event":"preview:change",'
            '"data":{"file":"/srv/workspace/src/a.js","type":"update"}}',
            FileChanged("src/a.js"),
        ),
        (
            '{"type":"update","updates":[{"type":"js-update","timestamp":7,'
            '"path":"/src/App.jsx","acceptedPath":"/src/App.jsx","explicitImportRequired":false},'
            '{"timestamp":8,"acceptedPath":"/src/logo.svg?raw","explicitImportRequired":true}]}',
            ModulesUpdated(("/src/App.jsx?t=7", "/src/logo.svg?import&t=8&raw")),
        ),
        ('{"type":"full-reload","path":"*"}', PageReloaded()),
        ('{"type":"prune","paths":[]}', None),
        ("not json", None),
        ("[1]", None),
    ],
)
def test_vite_hmr_messages(raw: str, event: object) -> None:
    assert parse_message(raw, ROOT) == event


def test_vite_error_message_becomes_compile_failed() -> None:
    event = parse_message(
        '{"type":"error","err":{"message":"bad","id":"/srv/workspace/x.js"}}', ROOT
    )
    assert event == CompileFailed("bad", "x.js", 0, 0)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('@@preview:console {"level":"warn","message":"hi"}', ("warn", "hi")),
        ('@@preview:console {"level":"shout","message":"hi"}', ("log", "hi")),
        ('@@preview:console {"level":"log","message":{"a":1}}', ("log", '{"a": 1}')),
        ("@@preview:console not json", None),
        ("[vite] hmr update /src/App.jsx", None),
    ],
)
def test_page_console_lines(line: str, expected: tuple[str, str] | None) -> None:
    assert page_message(line) == expected


def test_imports_and_entry_scripts_as_vite_writes_them() -> None:
    code = (
        'import { createHotContext } from "/@vite/client";import.meta.hot = 1;'
        'import __vite__cjsImport0_react from "/.vite/deps/react.js?v=929e";\n'
        'import App from "/src/App.jsx?t=12";\nimport "/src/index.css";\n'
        'export * from "/src/util.js";\nconst lazy = () => import("/src/Lazy.jsx");\n'
    )
    assert module_imports(code) == [
        "/@vite/client",
        "/.vite/deps/react.js?v=929e",
        "/src/App.jsx?t=12",
        "/src/index.css",
        "/src/util.js",
    ]
    html = (
        '<script type="module" src="/@vite/client"></script>'
        '<script type="module" src="/src/main.jsx">'
    )
    assert entry_scripts(html) == ["/@vite/client", "/src/main.jsx"]


def test_parse_response_handles_chunked_bodies() -> None:
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    response = parse_response(raw)
    assert (response.status, response.body) == (200, b"abcde")


@pytest.mark.parametrize(
    ("raw", "frame"),
    [
        ('{"v":1,"type":"assign","session":"s"}', Assign("s")),
        ('{"v":1,"type":"hydrate","session":"s","seq":0,"files":{}}', Hydrate("s", 0, {})),
        ('{"v":1,"type":"patch","seq":4,"changes":[]}', Patch(4, [])),
        ('{"v":1,"type":"ping"}', Ping()),
    ],
)
def test_server_frames(raw: str, frame: object) -> None:
    assert parse_server_frame(raw) == frame


@pytest.mark.parametrize(
    "raw",
    [
        "{",
        "[]",
        '{"type":"patch","seq":1,"changes":[]}',
        '{"v":2,"type":"patch","seq":1,"changes":[]}',
        '{"v":1,"type":"patch","seq":-1,"changes":[]}',
        '{"v":1,"type":"patch","seq":true,"changes":[]}',
        '{"v":1,"type":"patch","seq":"1","changes":[]}',
        '{"v":1,"type":"hydrate","seq":1,"files":{}}',
        '{"v":1,"type":"reboot"}',
    ],
)
def test_bad_server_frames(raw: str) -> None:
    with pytest.raises(FrameError):
        parse_server_frame(raw)
