"""The agent as a client of Metro (the `expo` template's dev server, run by Expo's CLI).

What `hmr` does for Vite, this does for Metro. Metro has no event for "the watcher took this
file in"; it has rounds. Every change its watcher reports starts one, for every registered
client, whether or not the file is in that client's graph:

    {"type": "update-start", "body": {"isInitialUpdate": false}}
    {"type": "update", "body": {"added": [...], "modified": [...], "deleted": [...]}}
      or {"type": "error", "body": {"type": "TransformError", "filename", "lineNumber", ...}}
    {"type": "update-done"}

The agent registers the web bundle's entry point, as the panel's page does, and turns a round
into one event when it is done: `ModulesUpdated` if it compiled, `CompileFailed` if it did not.
`bundle-registered` (the answer to the registration) is `Connected`: Metro has every file of
the graph as it is on disk now. Confirmation is therefore per round, not per file (the ack
tracker's mode for dev servers that name no files): a write that lands during a round may be
confirmed by that round, a few milliseconds early, never late.

Metro compiles a bundle only when it is requested, so `warm` asks for the page and its bundle,
and reads a failed bundle's JSON error into a `CompileFailed` (Metro answers 500 with the same
fields it sends over the socket).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, WebSocketException

from sandbox.agent.hmr import (
    CompileFailed,
    Connected,
    HmrEvent,
    ModulesUpdated,
    OnEvent,
    json_object,
    relative,
)
from sandbox.agent.logs import strip_ansi
from sandbox.agent.probe import CrawlResult, http_get, load_page

CONNECT_TIMEOUT = 5.0
PAGE_TIMEOUT = 30.0
# A first native or web build of the template takes seconds; a large project's, longer.
BUNDLE_TIMEOUT = 120.0
FAILED_BUNDLE_RETRY = 1.0
# What Expo's web page loads when its HTML names no bundle (the defaults of Expo CLI 57).
DEFAULT_BUNDLE = (
    "/index.bundle?platform=web&dev=true&hot=false&lazy=true&transform.engine=hermes"
    "&transform.routerRoot=app&unstable_transformProfile=hermes-stable"
)
BUNDLE_SCRIPT = re.compile(r"""<script\b[^>]*\bsrc=["'](/[^"']*\.bundle\?[^"']*)["']""")
# Expo CLI's environment: no telemetry, no calls to expo.dev (a machine has no route there),
# no browser to open. `CI` stays unset: Expo CLI turns its file watcher off under CI.
ENV = {
    "EXPO_NO_TELEMETRY": "1",
    "EXPO_OFFLINE": "1",
    "EXPO_NO_DEPENDENCY_VALIDATION": "1",
    "BROWSER": "none",
}


def arguments(port: int) -> list[str]:
    """Expo CLI's `start`, listening on loopback only (`--localhost`): the agent's front is
    the machine's only door."""
    return ["start", "--port", str(port), "--localhost"]


def bundle_path(html: str) -> str:
    found = BUNDLE_SCRIPT.search(html)
    return found.group(1).replace("&amp;", "&") if found else DEFAULT_BUNDLE


class Rounds:
    """Metro's HMR messages, one round at a time, as the agent's events."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._failed = False

    def feed(self, text: str | bytes) -> HmrEvent | None:
        raw = json_object(text)
        if raw is None:
            return None
        kind, body = raw.get("type"), raw.get("body")
        if kind == "bundle-registered":
            return Connected()
        if kind == "update-start":
            self._failed = False
        elif kind == "error" and isinstance(body, dict):
            if body.get("type") == "GraphNotFoundError":
                return None  # registration refused: not the user's code (see `listen`)
            self._failed = True
            return compile_error(body, self._root)
        elif kind == "update-done" and not self._failed:
            return ModulesUpdated(())
        return None


def compile_error(body: Mapping[str, Any], root: Path) -> CompileFailed:
    """Metro's error fields as buildError fields: Babel's `column` counts from 0, ours from 1
    (0 when unknown); `filename` is relative to the project or absolute."""
    message = strip_ansi(str(body.get("message") or body.get("type") or "build failed"))
    file = body.get("filename")
    line = body.get("lineNumber")
    column = body.get("column")
    return CompileFailed(
        message=message,
        file=relative(file, root) if isinstance(file, str) else "",
        line=line if isinstance(line, int) and line > 0 else 0,
        column=column + 1 if isinstance(column, int) and column >= 0 else 0,
    )


async def listen(port: int, root: Path, on_event: OnEvent) -> None:
    """Register the web bundle on Metro's HMR socket and deliver its rounds until it closes.

    Metro registers only a graph it has built (otherwise: GraphNotFoundError), so the bundle
    is requested first. While it does not compile there is no graph to watch, and nothing
    would tell the agent that the user fixed it: the error is reported and, after a pause,
    the caller's reconnect asks again."""
    try:
        page = await http_get(port, "/", timeout=PAGE_TIMEOUT, accept="text/html")
        entry = bundle_path(page.body.decode("utf-8", "replace"))
        bundle = await http_get(port, entry, timeout=BUNDLE_TIMEOUT)
        if bundle.status != 200:
            error = _bundle_error(bundle.body, root)
            if error is not None:
                await on_event(error)
            await asyncio.sleep(FAILED_BUNDLE_RETRY)
            return
        async with connect(
            f"ws://127.0.0.1:{port}/hot", open_timeout=CONNECT_TIMEOUT, proxy=None, max_size=None
        ) as socket:
            register = {"type": "register-entrypoints", "entryPoints": [_url(port, entry)]}
            await socket.send(json.dumps(register))
            rounds = Rounds(root)
            async for message in socket:
                event = rounds.feed(message)
                if event is not None:
                    await on_event(event)
    except (OSError, TimeoutError, InvalidHandshake, WebSocketException):
        return


async def warm(port: int, root: Path, timeout: float) -> CrawlResult:
    """Load the web page and its bundle, as the panel's first visit would."""
    result = CrawlResult()
    html = await load_page(port, result, timeout=timeout)
    if html is None:
        return result
    entry = bundle_path(html)
    bundle = await http_get(port, entry, timeout=timeout)
    result.fetched += 1
    if bundle.status != 200:
        result.failed.append(entry.partition("?")[0])
        result.build_error = _bundle_error(bundle.body, root)
    return result


def _bundle_error(body: bytes, root: Path) -> CompileFailed | None:
    raw = json_object(body)
    return compile_error(raw, root) if raw is not None and raw.get("filename") else None


def _url(port: int, path: str) -> str:
    return f"http://127.0.0.1:{port}{path}"
