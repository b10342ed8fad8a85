"""One fake Fly Machine: its state machine, transition latencies and lease.

States and transitions follow the research notes (section 3) and the docs they cite:
created -> starting -> started -> stopping -> stopped, started -> suspending -> suspended,
start resumes a suspended (or suspending) machine from its snapshot, stop discards the
snapshot, update reboots a running machine on a new version ("replacing"), destroy goes
through destroying to destroyed. Transitions take time: each is a step scheduled on the clock
and applied lazily by `settle(now)`, so the fake needs no background tasks.

A verb applied in a state it does not apply to raises Refused(412, "unable to <verb> machine
from current state: '<state>'"), Fly's wording.
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import Any

PERSISTENT = frozenset({"created", "started", "stopped", "suspended", "failed"})


class Refused(Exception):
    """An API error: HTTP status, message and Fly's `status` field."""

    def __init__(self, status: int, message: str, fly_status: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fly_status = fly_status


@dataclass(frozen=True)
class Latencies:
    """Seconds each transition takes (defaults after the notes' section 5, shortened)."""

    create: float = 2.0  # created -> starting (image pull, rootfs)
    boot: float = 0.5  # starting -> started, cold
    resume: float = 0.2  # starting -> started, from a snapshot
    stop: float = 0.3
    suspend: float = 1.0
    update: float = 1.0  # replacing -> starting
    destroy: float = 0.2
    tombstone: float = 5.0  # a destroyed machine still answers GET this long, then 404s


@dataclass
class Lease:
    nonce: str
    owner: str
    description: str
    expires_at: float


@dataclass
class FakeMachine:
    id: str
    name: str
    region: str
    config: dict[str, Any]
    created_at: float
    visible_at: float  # lists are eventually consistent: not listed before this
    latencies: Latencies
    state: str = "created"
    version: str = field(default_factory=lambda: new_version())
    private_ip: str = field(default_factory=lambda: f"fdaa:0:1:a7b:{secrets.token_hex(2)}::2")
    lease: Lease | None = None
    snapshot: bool = False
    fail_next_boot: bool = False
    cold_boots: int = 0
    resumes: int = 0
    destroyed_at: float | None = None
    steps: deque[tuple[float, str]] = field(default_factory=deque)

    # -- time --------------------------------------------------------------------------------

    def settle(self, now: float) -> None:
        while self.steps and self.steps[0][0] <= now:
            at, state = self.steps.popleft()
            if state == "started" and self.fail_next_boot:
                state, self.fail_next_boot = "failed", False
                self.steps.clear()
            self.state = state
            if state == "destroyed":
                self.destroyed_at = at

    def next_change(self) -> float | None:
        return self.steps[0][0] if self.steps else None

    def _schedule(self, now: float, *steps: tuple[float, str]) -> None:
        self.steps.clear()
        at = now
        for delay, state in steps:
            at += delay
            self.steps.append((at, state))

    # -- verbs -------------------------------------------------------------------------------

    def launch(self, now: float) -> None:
        self.cold_boots += 1
        self._schedule(now, (self.latencies.create, "starting"), (self.latencies.boot, "started"))

    def start(self, now: float) -> str:
        previous = self.state
        if previous not in ("created", "stopped", "suspended", "suspending"):
            raise _refuse("start", previous)
        self.state = "starting"
        if self.snapshot:
            self.resumes += 1
            self._schedule(now, (self.latencies.resume, "started"))
        else:
            self.cold_boots += 1
            self._schedule(now, (self.latencies.boot, "started"))
        self.snapshot = False
        return previous

    def stop(self, now: float) -> None:
        self.snapshot = False  # stopping a suspended machine discards its snapshot
        if self.state in ("stopped", "stopping"):
            return
        if self.state in ("suspended", "failed"):
            self.state = "stopped"
            self.steps.clear()
            return
        if self.state not in ("started", "starting", "suspending"):
            raise _refuse("stop", self.state)
        self.state = "stopping"
        self._schedule(now, (self.latencies.stop, "stopped"))

    def suspend(self, now: float) -> None:
        if self.state != "started":
            raise _refuse("suspend", self.state)
        self.state = "suspending"
        self.snapshot = True
        self._schedule(now, (self.latencies.suspend, "suspended"))

    def update(self, now: float, config: dict[str, Any], skip_launch: bool) -> None:
        if self.state not in PERSISTENT:
            raise _refuse("update", self.state)
        self.config = config
        self.version = new_version()
        self.snapshot = False  # snapshots drop on deploy (notes section 6)
        if self.state == "suspended":
            self.state = "stopped"
        if skip_launch:
            return
        # Without skip_launch the machine is recreated and started, whatever its state was
        # (flyctl's `machine update` docs: "by default, starts it"; `--skip-start` maps to
        # skip_launch).
        if self.state in ("started", "starting"):
            self.state = "replacing"
            self._schedule(
                now, (self.latencies.update, "starting"), (self.latencies.boot, "started")
            )
            self.cold_boots += 1
        elif self.state in ("created", "stopped"):
            self.state = "starting"
            self._schedule(now, (self.latencies.boot, "started"))
            self.cold_boots += 1

    def destroy(self, now: float, force: bool) -> None:
        if self.state in ("destroying", "destroyed"):
            return
        if self.state in ("started", "starting") and not force:
            raise Refused(412, "unable to destroy machine, not currently stopped; use force")
        self.state = "destroying"
        self._schedule(now, (self.latencies.destroy, "destroyed"))

    # -- leases ------------------------------------------------------------------------------

    def active_lease(self, now: float) -> Lease | None:
        if self.lease is not None and self.lease.expires_at <= now:
            self.lease = None
        return self.lease

    def check_nonce(self, now: float, nonce: str | None) -> None:
        """A write to a leased machine without its nonce is refused (notes section 2)."""
        lease = self.active_lease(now)
        if lease is not None and nonce != lease.nonce:
            raise Refused(
                409,
                f"aborted: machine ID {self.id} lease currently held by {lease.owner}, "
                f"expires at {lease.expires_at:.0f}",
            )

    def acquire_lease(
        self, now: float, nonce: str | None, ttl: float, owner: str, description: str
    ) -> Lease:
        lease = self.active_lease(now)
        if lease is not None:
            self.check_nonce(now, nonce)  # someone else's lease: 409
            lease.expires_at = now + ttl  # the holder's nonce refreshes its lease
            return lease
        self.lease = Lease(secrets.token_hex(16), owner, description, now + ttl)
        return self.lease

    def release_lease(self, now: float, nonce: str) -> None:
        lease = self.active_lease(now)
        if lease is None:
            raise Refused(404, "lease not found")
        self.check_nonce(now, nonce)
        self.lease = None


def new_version() -> str:
    # 26 characters, like the ULIDs Fly uses for versions.
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    return "01" + "".join(secrets.choice(alphabet) for _ in range(24))


def _refuse(verb: str, state: str) -> Refused:
    return Refused(412, f"unable to {verb} machine from current state: '{state}'")
