"""The machine's front passes the dev server's answers on without Fly's routing headers: the
user's code runs in the dev server and must not steer Fly's proxy (sandbox/agent/front.py)."""

from __future__ import annotations

import asyncio

import pytest

from sandbox.agent.front import relay_response_head


class Sink:
    def __init__(self) -> None:
        self.data = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        self.closed = True

    async def drain(self) -> None:
        pass


async def _relay(answer: bytes) -> tuple[Sink, bytes]:
    source = asyncio.StreamReader()
    source.feed_data(answer)
    source.feed_eof()
    sink = Sink()
    await relay_response_head(source, sink)  # type: ignore[arg-type]
    return sink, await source.read()


async def test_fly_headers_are_dropped_and_the_rest_is_kept() -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nfly-replay: app=x;instance=1\r\n"
        b"FLY-Replay-Src: instance=2\r\nContent-Length: 2\r\n\r\nok"
    )
    sink, rest = await _relay(answer)
    assert sink.data == b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 2\r\n\r\n"
    assert rest == b"ok"  # the body is left for the pipe


async def test_the_head_after_100_continue_is_filtered_too() -> None:
    answer = (
        b"HTTP/1.1 100 Continue\r\nfly-replay: instance=1\r\n\r\n"
        b"HTTP/1.1 204 No Content\r\nfly-replay: instance=1\r\nX-Kept: 1\r\n\r\n"
    )
    sink, rest = await _relay(answer)
    assert sink.data == b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX-Kept: 1\r\n\r\n"
    assert rest == b""


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nfly-replay: instance=1\r\n\r\n"
        b"\x81\x02hi",
    ],
)
async def test_a_websocket_upgrade_ends_the_head_and_frames_follow_untouched(answer: bytes) -> None:
    sink, rest = await _relay(answer)
    assert sink.data == b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    assert rest == b"\x81\x02hi"


async def test_a_dev_server_that_closes_mid_head_passes_on_what_it_sent() -> None:
    sink, rest = await _relay(b"HTTP/1.1 200 OK\r\nContent-")
    assert sink.data == b"HTTP/1.1 200 OK\r\nContent-" and rest == b""


@pytest.mark.parametrize(
    "smuggled",
    [
        b"X-A: 1\nFly-Replay: app=orchestrator;instance=abc\r\n",
        b"X-A: 1\rFly-Replay: instance=abc\r\n",
    ],
)
async def test_a_bare_line_break_cannot_hide_a_fly_header(smuggled: bytes) -> None:
    # Some parsers end a header line at a lone LF; the filter splits on CRLF. The user's dev
    # server (its config is theirs) must not get a Fly-Replay through that way: 502 instead.
    answer = b"HTTP/1.1 200 OK\r\n" + smuggled + b"Content-Length: 2\r\n\r\nok"
    sink, _ = await _relay(answer)
    assert sink.data.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert b"fly-replay" not in sink.data.lower()


def test_only_crlf_counts_as_a_line_break() -> None:
    from sandbox.agent.probe import has_bare_line_break

    assert not has_bare_line_break(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n")
    assert has_bare_line_break(b"HTTP/1.1 200 OK\r\nA: b\nC: d\r\n\r\n")
    assert has_bare_line_break(b"HTTP/1.1 200 OK\r\nA: b\r\r\n\r\n")
