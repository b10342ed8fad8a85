"""Pacing writes so that the dev server's file watcher sees every one of them.

Vite watches files with chokidar, which drops a second `change` of a path reported less than
50 ms after the first (a throttle with no trailing call). Two quick edits of one file would
leave the dev server serving the first, and the browser would never get the second. So a path
is written again only after the watcher reported its previous write (the template plugin's
`preview:change`) and the throttle window after that report has passed. Without reports (a
vite.config.js that dropped the plugin) the agent can only keep a fixed gap after its own write.

Pure bookkeeping with the clock passed in; the agent sleeps until `ready_at`. The cost is a
delay of at most ~60 ms for an edit that follows an edit of the same file at typing speed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

# chokidar's change throttle, plus a margin for the report to reach the agent.
WINDOW = 0.06


@dataclass
class WritePacer:
    window: float = WINDOW
    # How long to wait for the report of a write before writing the path again anyway.
    patience: float = 2.0
    _unreported: dict[str, float] = field(default_factory=dict)
    _reported: dict[str, float] = field(default_factory=dict)
    _reports_seen: bool = False

    def ready_at(self, paths: Iterable[str]) -> float:
        """The earliest time at which all `paths` may be written."""
        wait_for_report = self.patience if self._reports_seen else self.window
        at = 0.0
        for path in paths:
            if (written := self._unreported.get(path)) is not None:
                at = max(at, written + wait_for_report)
            elif (reported := self._reported.get(path)) is not None:
                at = max(at, reported + self.window)
        return at

    def wrote(self, paths: Iterable[str], now: float) -> None:
        self._forget_before(now - max(self.window, self.patience))
        for path in paths:
            self._unreported[path] = now

    def reported(self, path: str, now: float) -> None:
        self._reports_seen = True
        self._unreported.pop(path, None)
        self._reported[path] = now

    def reset(self) -> None:
        """A new watcher (Vite restarted): nothing is throttled any more."""
        self._unreported.clear()
        self._reported.clear()

    def _forget_before(self, cutoff: float) -> None:
        for times in (self._unreported, self._reported):
            for path in [path for path, at in times.items() if at < cutoff]:
                del times[path]
