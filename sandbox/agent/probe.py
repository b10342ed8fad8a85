"""Asking the dev server for pages and modules, the way a browser would.

Vite compiles a module only when something requests it, so with no browser attached a
syntax error would go unnoticed and the first visitor would wait for every dependency to be
pre-bundled. The agent therefore requests what a page load requests: `warm` crawls from `/`
through every static import (before the machine reports ready), and after a hot update
`crawl` follows the updated modules and their freshly stamped imports. A failed compile
answers 500, and Vite broadcasts the error over its HMR socket, where the listener turns it
into a `buildError`.

A minimal HTTP/1.1 client on asyncio streams: the agent ships with the standard library and
`websockets` only, and only ever talks to a dev server on loopback.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from sandbox.agent.hmr import CompileFailed

HOST = "127.0.0.1"
MAX_BODY = 32 * 1024 * 1024
MAX_MODULES = 400
PARALLEL = 8
# Static imports in Vite's output, which are always rewritten to absolute URLs.
IMPORT = re.compile(
    r"""(?:^|[;\s}])(?:import|export)\s*(?:[\w$*{}\s,]*?\sfrom\s*)?["'](/[^"'\s]+)["']"""
)
MODULE_SCRIPT = re.compile(r"""<script\b[^>]*\btype=["']module["'][^>]*\bsrc=["']([^"']+)["']""")


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    # Lower-case names; a repeated header keeps its last value.
    headers: dict[bytes, bytes] = field(default_factory=dict)


@dataclass
class CrawlResult:
    fetched: int = 0
    failed: list[str] = field(default_factory=list)
    # What the dev server said about a failed compile in its answer (Metro's JSON), if it did.
    build_error: CompileFailed | None = None

    @property
    def ok(self) -> bool:
        return not self.failed


async def http_get(port: int, target: str, *, timeout: float, accept: str = "*/*") -> Response:
    """GET http://127.0.0.1:{port}{target}; raises OSError or TimeoutError."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            request = (
                f"GET {target} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: {accept}\r\n"
                "User-Agent: preview-agent\r\nConnection: close\r\n\r\n"
            )
            writer.write(request.encode("latin-1"))
            await writer.drain()
            raw = bytearray()
            while chunk := await reader.read(65536):
                raw += chunk
                if len(raw) > MAX_BODY:
                    raise OSError(f"response to {target} is over {MAX_BODY} bytes")
        finally:
            writer.close()
    return parse_response(bytes(raw))


def has_bare_line_break(head: bytes) -> bool:
    """Whether an HTTP head has a CR or LF that is not part of a CRLF."""
    rest = head.replace(b"\r\n", b"")
    return b"\r" in rest or b"\n" in rest


def parse_response(raw: bytes) -> Response:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise OSError(f"not an HTTP response: {lines[0][:60]!r}")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(b":") for line in lines[1:])
    }
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = _dechunk(body)
    return Response(int(parts[1]), body, headers)


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return bytes(out)


def module_imports(code: str) -> list[str]:
    return IMPORT.findall(code)


def entry_scripts(html: str) -> list[str]:
    return [src for src in MODULE_SCRIPT.findall(html) if src.startswith("/")]


def fresh_only(url: str) -> bool:
    """After a hot update: follow what the update re-stamped, not the whole graph again."""
    return "t=" in url.partition("?")[2] and "/.vite/" not in url


async def load_page(port: int, result: CrawlResult, *, timeout: float) -> str | None:
    """The HTML of `/` as a browser asks for it, counted in `result`; None if it failed."""
    page = await http_get(port, "/", timeout=timeout, accept="text/html")
    result.fetched += 1
    if page.status != 200:
        result.failed.append("/")
        return None
    return page.body.decode("utf-8", "replace")


async def warm(port: int, *, timeout: float) -> CrawlResult:
    """Load `/` and everything its module scripts import, as a first page visit would."""
    result = CrawlResult()
    html = await load_page(port, result, timeout=timeout)
    if html is None:
        return result
    roots = entry_scripts(html)
    return await crawl(port, roots, timeout=timeout, follow=lambda url: True, result=result)


async def crawl(
    port: int,
    roots: list[str],
    *,
    timeout: float,
    follow: Callable[[str], bool] = fresh_only,
    result: CrawlResult | None = None,
) -> CrawlResult:
    """Request `roots` and, breadth first, the imports `follow` accepts."""
    result = result if result is not None else CrawlResult()
    seen = set(roots)
    level = list(roots)
    limit = asyncio.Semaphore(PARALLEL)

    async def fetch(url: str) -> list[str]:
        async with limit:
            try:
                response = await http_get(port, url, timeout=timeout)
            except (OSError, TimeoutError):
                result.failed.append(url)
                return []
        result.fetched += 1
        if response.status != 200:
            result.failed.append(url)
            return []
        return module_imports(response.body.decode("utf-8", "replace"))

    while level and len(seen) <= MAX_MODULES:
        found = await asyncio.gather(*(fetch(url) for url in level))
        level = []
        for url in (url for urls in found for url in urls):
            if url not in seen and url != "/@vite/client" and follow(url):
                seen.add(url)
                level.append(url)
    return result
