"""Session states and the transitions between them.

    booting ──▶ active ──▶ ended
       │  │       │          ▲
       │  └───────┼──────────┘   (deleted while booting)
       └──────────┴─────▶ failed

An illegal transition raises; the SQL that moves a session names the states it may leave, so a
racing writer that already ended a session cannot bring it back.
"""

from __future__ import annotations

import enum


class IllegalTransition(RuntimeError):
    pass


class SessionStatus(enum.StrEnum):
    BOOTING = "booting"
    ACTIVE = "active"
    ENDED = "ended"
    FAILED = "failed"

    @property
    def is_live(self) -> bool:
        return self in (SessionStatus.BOOTING, SessionStatus.ACTIVE)

    def can_become(self, target: SessionStatus) -> bool:
        return target in _ALLOWED[self]

    def check_transition(self, target: SessionStatus) -> SessionStatus:
        if not self.can_become(target):
            raise IllegalTransition(f"a session cannot go from {self} to {target}")
        return target

    @classmethod
    def sources_of(cls, target: SessionStatus) -> tuple[str, ...]:
        """The states a session may be in for `target` to be legal (for SQL WHERE clauses)."""
        return tuple(s.value for s in cls if target in _ALLOWED[s])


_ALLOWED: dict[SessionStatus, frozenset[SessionStatus]] = {
    SessionStatus.BOOTING: frozenset(
        {SessionStatus.ACTIVE, SessionStatus.ENDED, SessionStatus.FAILED}
    ),
    SessionStatus.ACTIVE: frozenset({SessionStatus.ENDED, SessionStatus.FAILED}),
    SessionStatus.ENDED: frozenset(),
    SessionStatus.FAILED: frozenset(),
}
