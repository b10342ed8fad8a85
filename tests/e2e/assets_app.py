"""A React App that shows images sent as binary patches, and the images: what the binary-asset
tests (agent and browser) write. One image is imported by the App (Vite serves it from
`src/assets/`), one lies in `public/` and is named by its URL."""

from __future__ import annotations

import base64
import struct
import zlib
from typing import Any

from tests.e2e.stack import APP

IMPORTED = "src/assets/logo.png"
PUBLIC = "public/img/badge.png"
PUBLIC_URL = "/img/badge.png"

# The stack's React App (a heading, a counter), with the two images.
ASSETS_APP = APP.replace(
    "import { useState } from 'react'\n",
    "import { useState } from 'react'\nimport logo from './assets/logo.png'\n",
).replace(
    '<h1 id="title">TITLE</h1>\n',
    '<h1 id="title">TITLE</h1>\n'
    '      <img id="logo" src={logo} alt="logo" />\n'
    '      <img id="badge" src="/img/badge.png" alt="badge" />\n',
)


def assets_app_source(title: str) -> str:
    return ASSETS_APP.replace("TITLE", title)


def png(width: int, height: int) -> bytes:
    """A valid 8-bit RGB PNG of that size: a pattern whose bytes hold NUL and high bytes, which
    no text content could carry."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 37 % 256, y * 53 % 256, 0)) for x in range(width))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def binary_change(path: str, data: bytes) -> dict[str, Any]:
    """A patch's change for a binary file (docs/protocol.md, "Binary files")."""
    return {"path": path, "content": base64.b64encode(data).decode(), "encoding": "base64"}
