"""The agent as a client of Vite's HMR socket: what the dev server did with our writes.

Vite broadcasts to every HMR client; the agent connects like a browser tab would (subprotocol
`vite-hmr`, no Origin header, so no token is needed) and turns the messages into events:

    {"type": "connected"}                               -> Connected
    {"type": "custom", "event": "preview:change", ...}  -> FileChanged   (template plugin)
    {"type": "update", "updates": [...]}                -> ModulesUpdated
    {"type": "full-reload", ...}                        -> PageReloaded
    {"type": "error", "err": {...}}                     -> CompileFailed

`listen` serves one connection and returns when it closes: Vite restarts its server when its
config changes, and the caller reconnects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, WebSocketException
from websockets.typing import Subprotocol

from sandbox.agent.logs import strip_ansi

CONNECT_TIMEOUT = 5.0
# oxc / rolldown put the position in the message: "╭─[ src/App.jsx?t=5:5:3 ]".
MESSAGE_POSITION = re.compile(r"\[\s*([^\s\[\]]+?):(\d+):(\d+)\s*\]")
# A path the message names, for errors that carry no id (an SFC's <script> that Babel could not
# parse while plugin-vue computed the hot update prints the file on a line of its own).
MESSAGE_PATH = r"(?:^|\s)({root}/[^\s:?\"'()\[\]]+)"
# plugin-vue copies the Vue compiler's position into Rollup's `loc` as it is, and Vue counts
# columns from 1. Those errors name the file in `loc`; Babel's, for a <script> block, keep
# Rollup's 0-based columns and name none.
VUE_PLUGIN = "vite:vue"


@dataclass(frozen=True)
class Connected:
    pass


@dataclass(frozen=True)
class FileChanged:
    path: str


@dataclass(frozen=True)
class ModulesUpdated:
    urls: tuple[str, ...]


@dataclass(frozen=True)
class PageReloaded:
    pass


@dataclass(frozen=True)
class CompileFailed:
    message: str
    file: str
    line: int
    column: int

    def summary(self) -> str:
        """One line for a status detail: where, and the first line that says what."""
        lines = [line.strip() for line in self.message.splitlines() if line.strip()]
        what = next((line for line in lines if not line.endswith(":")), lines[0] if lines else "")
        where = f"{self.file}:{self.line}:{self.column}: " if self.file else ""
        return (where + what)[:300]


HmrEvent = Connected | FileChanged | ModulesUpdated | PageReloaded | CompileFailed
OnEvent = Callable[[HmrEvent], Awaitable[None]]


def json_object(text: str | bytes) -> dict[str, Any] | None:
    """A socket message as a JSON object, or None for anything else (dev servers' messages
    are never trusted to be well-formed)."""
    try:
        raw = json.loads(text)
    except ValueError:
        return None
    return raw if isinstance(raw, dict) else None


def parse_message(text: str | bytes, root: Path) -> HmrEvent | None:
    raw = json_object(text)
    if raw is None:
        return None
    kind = raw.get("type")
    if kind == "connected":
        return Connected()
    if kind == "update":
        return ModulesUpdated(tuple(_update_urls(raw.get("updates"))))
    if kind == "full-reload":
        return PageReloaded()
    if kind == "error" and isinstance(raw.get("err"), dict):
        return compile_error(raw["err"], root)
    data = raw.get("data")
    if kind == "custom" and raw.get("event") == "preview:change" and isinstance(data, dict):
        file = data.get("file")
        return FileChanged(relative(file, root)) if isinstance(file, str) else None
    return None


def _update_urls(updates: object) -> list[str]:
    urls = []
    for update in updates if isinstance(updates, list) else []:
        if not isinstance(update, dict) or not isinstance(update.get("acceptedPath"), str):
            continue
        # What the browser requests for a hot update (see Vite's client, fetchUpdate).
        path, _, query = update["acceptedPath"].partition("?")
        stamp = f"t={update.get('timestamp')}"
        if update.get("explicitImportRequired"):
            stamp = f"import&{stamp}"
        urls.append(f"{path}?{stamp}" + (f"&{query}" if query else ""))
    return urls


def compile_error(err: dict[str, Any], root: Path) -> CompileFailed:
    """A Vite error payload as buildError fields: file relative to the workspace, line and
    column 1-based (0 when unknown)."""
    message = strip_ansi(str(err.get("message") or "build failed"))
    loc = err.get("loc")
    file, line, column = err.get("id"), 0, 0
    if isinstance(loc, dict) and isinstance(loc.get("line"), int):
        one_based = err.get("plugin") == VUE_PLUGIN and bool(loc.get("file"))
        file = loc.get("file") or file
        line = loc["line"]
        column = _loc_column(loc, one_based=one_based)
    elif found := MESSAGE_POSITION.search(message):
        # oxc and rolldown print "[ src/App.jsx?t=5:5:3 ]", both 1-based.
        file = file or found.group(1)
        line, column = int(found.group(2)), int(found.group(3))
    if not file:
        file = _named_path(message, root)
    return CompileFailed(
        message=message,
        file=relative(file, root) if isinstance(file, str) else "",
        line=line,
        column=column,
    )


def _loc_column(loc: dict[str, Any], *, one_based: bool) -> int:
    """Rollup's `loc.column` counts from 0 (plugin-vue's Vue errors from 1); ours from 1."""
    column = loc.get("column")
    if not isinstance(column, int):
        return 0
    return column if one_based else column + 1


def _named_path(message: str, root: Path) -> str:
    found = re.search(MESSAGE_PATH.format(root=re.escape(root.as_posix())), message)
    return found.group(1) if found else ""


def relative(file: str, root: Path) -> str:
    """A file Vite names (absolute, or root-relative, maybe with ?query) relative to root."""
    path = file.partition("?")[0]
    candidate = Path(path)
    if candidate.is_absolute() and candidate.is_relative_to(root):
        return candidate.relative_to(root).as_posix()
    return path


async def listen(port: int, root: Path, on_event: OnEvent) -> None:
    """Deliver the events of one HMR connection until it closes or cannot be opened."""
    try:
        async with connect(
            f"ws://127.0.0.1:{port}/",
            subprotocols=[Subprotocol("vite-hmr")],
            open_timeout=CONNECT_TIMEOUT,
            proxy=None,
            max_size=None,
        ) as socket:
            async for message in socket:
                event = parse_message(message, root)
                if event is not None:
                    await on_event(event)
    except (OSError, TimeoutError, InvalidHandshake, WebSocketException):
        return
