"""Another site for the browser tests: a plain static server on 127.0.0.1 (a different site
from the API's `localhost` and the previews' `*.preview.localhost`), serving the pages an
editor team would write to embed the panel."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path


class _Quiet(http.server.SimpleHTTPRequestHandler):
    extensions_map = {  # noqa: RUF012 (http.server reads this class attribute)
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".mjs": "text/javascript",
    }

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def static_site(root: Path, port: int) -> Iterator[str]:
    """Serve `root` at http://127.0.0.1:{port}; yields the origin."""
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, name=f"site-{port}", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def fenced_file(markdown: str, name: str) -> str:
    """The body of the fenced block tagged `file=name` in `markdown` (docs run by tests)."""
    lines = markdown.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("```") and f"file={name}" in line.split():
            body: list[str] = []
            for inner in lines[index + 1 :]:
                if inner.startswith("```"):
                    return "\n".join(body) + "\n"
                body.append(inner)
    raise AssertionError(f"no ```… file={name} block")
