"""An editor client of the realtime protocol (docs/protocol.md), on `websockets.sync.client`.

A reader thread records every frame the server sends (with the monotonic time it arrived), so
a test can wait for a frame and also look back at everything the socket saw (were the
`applied` seqs in order?). A keep-alive thread pings well within the server's idle timeout.
The editor numbers its patches itself: `seq = last + 1`, as the protocol asks.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

Frame = dict[str, Any]
KEEPALIVE_SECONDS = 15.0
DEFAULT_TIMEOUT = 15.0


class Editor:
    def __init__(self, url: str, *, open_timeout: float = 10.0) -> None:
        self.url = url
        # Entered as a context manager, as websockets asks (it is closed in `close`).
        self.socket: ClientConnection = connect(
            url, open_timeout=open_timeout, max_size=64 * 1024 * 1024, proxy=None
        ).__enter__()
        self.frames: list[Frame] = []
        self.arrived: list[float] = []
        self.seq = 0
        self.closed = threading.Event()
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, name="editor-reader", daemon=True)
        self._pinger = threading.Thread(target=self._keepalive, name="editor-ping", daemon=True)
        self._reader.start()
        self._pinger.start()

    def __enter__(self) -> Editor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self.socket.close()
        self._reader.join(timeout=10)
        self._pinger.join(timeout=10)

    # -- sending -------------------------------------------------------------------------------

    def send(self, kind: str, **fields: Any) -> None:
        self.socket.send(json.dumps({"v": 1, "type": kind, **fields}))

    def send_raw(self, text: str) -> None:
        self.socket.send(text)

    def hello(self, last_seq: int = 0, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        mark = self.mark()
        self.send("hello", lastSeq=last_seq)
        welcome = self.wait("welcome", after=mark, timeout=timeout)
        self.seq = int(welcome["head"])
        return welcome

    def patch(self, changes: list[dict[str, Any]]) -> int:
        """Send the next numbered patch; returns its seq (not waiting for anything)."""
        self.seq += 1
        self.send("patch", seq=self.seq, changes=changes)
        return self.seq

    def write(self, path: str, content: str) -> int:
        return self.patch([{"path": path, "content": content}])

    # -- receiving -----------------------------------------------------------------------------

    def mark(self) -> int:
        with self._changed:
            return len(self.frames)

    def of(self, kind: str, after: int = 0) -> list[Frame]:
        with self._changed:
            return [f for f in self.frames[after:] if f.get("type") == kind]

    def wait(
        self,
        kind: str,
        where: Callable[[Frame], bool] = lambda f: True,
        *,
        after: int = 0,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Frame:
        """The first frame of `kind` at index >= `after` matching `where`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for frame in self.frames[after:]:
                    if frame.get("type") == kind and where(frame):
                        return frame
                left = deadline - time.monotonic()
                if left <= 0 or self.closed.is_set():
                    seen = [f.get("type") for f in self.frames[after:]][-20:]
                    raise AssertionError(
                        f"no {kind} frame within {timeout}s (closed: {self.closed.is_set()}, "
                        f"code {self.socket.close_code}); last frames: {seen}"
                    )
                self._changed.wait(left)

    def wait_applied(self, seq: int, *, after: int = 0, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        return self.wait("applied", lambda f: int(f["seq"]) >= seq, after=after, timeout=timeout)

    def applied_seqs(self, after: int = 0) -> list[int]:
        return [int(f["seq"]) for f in self.of("applied", after)]

    def wait_closed(self, timeout: float = DEFAULT_TIMEOUT) -> int | None:
        assert self.closed.wait(timeout), "the server did not close the socket"
        return self.socket.close_code

    # -- threads -------------------------------------------------------------------------------

    def _read(self) -> None:
        try:
            for raw in self.socket:
                frame = json.loads(raw)
                with self._changed:
                    self.frames.append(frame)
                    self.arrived.append(time.monotonic())
                    self._changed.notify_all()
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            with self._changed:
                self._changed.notify_all()

    def _keepalive(self) -> None:
        while not self._stop.wait(KEEPALIVE_SECONDS):
            try:
                self.send("ping")
            except ConnectionClosed:
                return
