"""The local preview proxy's upstream client (app/preview_upstream.py) against a raw socket
server: what reaches the machine, and how each way of framing an answer reaches the browser."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.preview_upstream import UpstreamError, relay


class Machine:
    """A one-answer-per-connection HTTP server that records what it was sent."""

    def __init__(self, answer: bytes | None) -> None:
        self.answer = answer
        self.received: list[bytes] = []
        self.address = ""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Machine:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.address = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        self.received.append(head + (await reader.readexactly(length) if length else b""))
        if self.answer is not None:
            writer.write(self.answer)
            await writer.drain()
        writer.close()


class Browser:
    """The ASGI `send` side: the messages the proxy passes on."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def send(self, message: Any) -> None:
        self.messages.append(dict(message))

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.messages[0]["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])

    @property
    def finished(self) -> bool:
        return self.messages[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


@pytest.fixture
def browser() -> Browser:
    return Browser()


async def _relay(
    machine: Machine, browser: Browser, method: str = "GET", body: bytes = b""
) -> None:
    headers = [(b"accept", b"*/*"), (b"cookie", b"theme=dark")]
    await relay(machine.address, method, "/src/App.jsx?t=1", headers, body, browser.send)


async def test_a_framed_answer_keeps_its_length_and_the_request_is_one_per_connection(
    browser: Browser,
) -> None:
    answer = b"HTTP/1.1 200 OK\r\ncontent-type: text/javascript\r\ncontent-length: 5\r\n\r\nhello"
    async with Machine(answer) as machine:
        await _relay(machine, browser)

    (request,) = machine.received
    lines = request.split(b"\r\n")
    assert lines[0] == b"GET /src/App.jsx?t=1 HTTP/1.1"
    assert f"host: {machine.address.removeprefix('http://')}".encode() in lines
    assert b"accept: */*" in lines and b"cookie: theme=dark" in lines
    assert b"connection: close" in lines
    assert not any(line.startswith(b"content-length") for line in lines)  # a GET without body
    assert browser.status == 200 and browser.body == b"hello" and browser.finished
    assert browser.headers[b"content-length"] == b"5"


async def test_a_chunked_answer_is_unframed_for_the_asgi_server_to_frame_again(
    browser: Browser,
) -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n"
        b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
    )
    async with Machine(answer) as machine:
        await _relay(machine, browser)

    assert browser.body == b"abcdefg" and browser.finished
    # Hop-by-hop headers are this hop's business, not the browser's.
    assert b"transfer-encoding" not in browser.headers and b"connection" not in browser.headers


async def test_an_answer_ended_by_closing_the_connection_is_relayed_whole(
    browser: Browser,
) -> None:
    async with Machine(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end") as m:
        await _relay(m, browser)

    assert browser.body == b"until the end" and browser.finished


async def test_a_post_body_goes_with_its_length_and_head_gets_no_body(browser: Browser) -> None:
    answer = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok"
    async with Machine(answer) as machine:
        await _relay(machine, browser, "POST", b'{"a": 1}')
    assert machine.received[0].endswith(b'content-length: 8\r\nconnection: close\r\n\r\n{"a": 1}')
    assert browser.status == 201 and browser.body == b"ok"

    head = Browser()
    async with Machine(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n") as machine:
        await asyncio.wait_for(_relay(machine, head, "HEAD"), 5)
    assert head.status == 200 and head.body == b"" and head.finished


@pytest.mark.parametrize(
    "answer",
    [
        None,  # closes without a word
        b"SSH-2.0-OpenSSH_9.2\r\n",  # not HTTP at all
        b"HTTP/1.1 200 OK\r\ncontent-length: nope\r\n\r\n",  # a malformed head
    ],
)
async def test_a_machine_that_does_not_answer_http_is_an_upstream_error(
    browser: Browser, answer: bytes | None
) -> None:
    async with Machine(answer) as machine:
        with pytest.raises(UpstreamError):
            await _relay(machine, browser)
    assert browser.messages == []  # nothing went to the browser: the proxy can still answer 502


async def test_a_machine_that_is_not_listening_is_an_upstream_error(browser: Browser) -> None:
    async with Machine(b"") as machine:
        address = machine.address
    with pytest.raises(UpstreamError, match="cannot connect"):
        await relay(address, "GET", "/", [], b"", browser.send)
