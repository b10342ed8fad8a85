"""When a written patch counts as picked up by the dev server: the `applied` decision.

Pure bookkeeping, the clock passed in. Writes are pipelined: patch N+1 is written while N
still waits for its confirmation, and confirmations go out strictly in seq order. A pending
write is confirmed when the first of these happens:

  - Vite announced a change of every path it touched (`preview:change`, from the template's
    plugin, sent when Vite takes the change in, also for files no page has loaded yet);
  - Vite sent an update, a full reload or an error, and no `preview:change` has ever come
    from it (a workspace whose vite.config.js dropped the plugin);
  - Vite (re)connected: it restarted and read every file from disk;
  - the timeout passed: confirmed anyway, flagged so the agent can say so in a log line.

A later write to the same path may be confirmed by the announcement of an earlier one: early
by the few milliseconds until Vite sees the second write, never late and never out of order.
A write that changed nothing (identical content) is confirmed as soon as its turn comes.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Ack:
    seq: int
    timed_out: bool = False


@dataclass
class _Pending:
    seq: int
    waiting: set[str]
    deadline: float
    confirmed: bool = False
    timed_out: bool = False


@dataclass
class AckTracker:
    timeout: float
    _pending: list[_Pending] = field(default_factory=list)
    _announces_changes: bool = False

    def add(self, seq: int, paths: list[str], now: float) -> list[Ack]:
        self._pending.append(_Pending(seq, set(paths), now + self.timeout, confirmed=not paths))
        return self._release()

    def file_changed(self, path: str) -> list[Ack]:
        self._announces_changes = True
        for pending in self._pending:
            pending.waiting.discard(path)
            pending.confirmed = pending.confirmed or not pending.waiting
        return self._release()

    def dev_server_message(self) -> list[Ack]:
        if self._announces_changes:
            return []
        return self.confirm_all()

    def confirm_all(self) -> list[Ack]:
        for pending in self._pending:
            pending.confirmed = True
        return self._release()

    def expire(self, now: float) -> list[Ack]:
        for pending in self._pending:
            if not pending.confirmed and now >= pending.deadline:
                pending.confirmed = pending.timed_out = True
        return self._release()

    def next_deadline(self) -> float | None:
        deadlines = [p.deadline for p in self._pending if not p.confirmed]
        return min(deadlines) if deadlines else None

    def clear(self) -> None:
        self._pending.clear()

    def _release(self) -> list[Ack]:
        released = []
        while self._pending and self._pending[0].confirmed:
            pending = self._pending.pop(0)
            released.append(Ack(pending.seq, pending.timed_out))
        return released
