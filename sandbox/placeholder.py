"""A stand-in for the sandbox agent: answers health checks and serves the workspace.

Run as `python -m sandbox.placeholder --port P --workspace DIR` (with `--listen-fd N`, on an
inherited listening socket instead of binding the port). It imports only the standard library
because it ships alone in the machine image. It takes no token: it serves nothing worth
guarding and connects to nobody.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

READY_PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>Preview</title></head>
<body><p>preview machine ready</p></body></html>
"""


class WorkspaceHandler(SimpleHTTPRequestHandler):
    def __init__(self, *args: Any, machine_id: str, **kwargs: Any) -> None:
        # Set before super().__init__, which handles the whole request.
        self.machine_id = machine_id
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        route = urlsplit(self.path).path
        if route == "/healthz":
            body = json.dumps({"status": "ready", "machine": self.machine_id}).encode()
            self._send_bytes(body, "application/json")
        elif route == "/" and not (Path(self.directory) / "index.html").is_file():
            self._send_bytes(READY_PAGE, "text/html; charset=utf-8")
        else:
            super().do_GET()

    def send_head(self) -> Any:
        # translate_path already drops `..` segments; resolving also catches symlinks that a
        # preview's build could leave pointing outside the workspace.
        root = Path(self.directory).resolve()
        target = Path(self.translate_path(self.path)).resolve()
        if not target.is_relative_to(root):
            self.send_error(HTTPStatus.FORBIDDEN)
            return None
        return super().send_head()

    def list_directory(self, path: str | os.PathLike[str]) -> None:
        # A listing would expose files the preview never meant to serve.
        self.send_error(HTTPStatus.NOT_FOUND)
        return None

    def log_message(self, format: str, *args: Any) -> None:
        # The orchestrator polls /healthz several times a second while a machine boots.
        if "/healthz" not in self.requestline:
            super().log_message(format, *args)

    def _send_bytes(self, body: bytes, content_type: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sandbox.placeholder", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--listen-fd", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--machine-id", default=socket.gethostname())
    return parser.parse_args(argv)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Unwinds serve_forever in the main thread so `with server` closes the socket.
    raise SystemExit(0)


def _server(args: argparse.Namespace, handler: Any) -> ThreadingHTTPServer:
    if args.listen_fd is None:
        return ThreadingHTTPServer((args.host, args.port), handler)
    server = ThreadingHTTPServer((args.host, args.port), handler, bind_and_activate=False)
    server.socket.close()
    server.socket = socket.socket(fileno=args.listen_fd)  # already bound and listening
    server.server_address = server.socket.getsockname()
    return server


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    workspace = args.workspace.resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    handler = partial(WorkspaceHandler, machine_id=args.machine_id, directory=str(workspace))
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with _server(args, handler) as server:
        print(f"placeholder {args.machine_id} serving {workspace} on {args.port}", flush=True)
        try:
            server.serve_forever(poll_interval=0.25)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
