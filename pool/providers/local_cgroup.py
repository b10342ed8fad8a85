"""Memory, CPU and pids limits for one local machine, on cgroup v2 or, failing that, v1.

    v2   {cgroup2 mount}/preview-machines/{machine}          one directory for all three
    v1   {controller mount}/{our own cgroup}/preview-machines/{machine}, one per controller

cgroup v2 forbids enabling controllers for the children of a cgroup that holds processes
(except the root), so v2 machines sit under the mount's root, where the controllers are
enabled for `preview-machines` and its children. v1 has no such rule, and nesting under our
own cgroup keeps the machines inside whatever limits this process already lives under.

Hosts differ: a controller may be missing, bound to the other version (a hybrid host, where
cgroup2 holds no controller at all), or not writable without root or delegation. `detect`
finds what can be used; `Layout.missing` names the controllers that cannot, so the provider
can say exactly which limits are not enforced. Only the standard library: the machine's
supervisor process (local_supervisor) imports this module too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CONTROLLERS = ("memory", "cpu", "pids")
PARENT = "preview-machines"
CPU_PERIOD_US = 100_000
REMOVE_TIMEOUT = 2.0
REMOVE_POLL = 0.02


@dataclass(frozen=True)
class Limits:
    memory_mb: int
    cpus: float
    pids_max: int


@dataclass(frozen=True)
class Mount:
    """A cgroup filesystem: where it is mounted, which part of the hierarchy it shows, and the
    controllers it carries (v1) or offers (v2)."""

    version: int
    point: Path
    root: str
    controllers: frozenset[str]


@dataclass(frozen=True)
class Layout:
    """Where machine cgroups go: the `preview-machines` directory for each usable controller."""

    version: int
    parents: dict[str, Path]

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(c for c in CONTROLLERS if c not in self.parents)


def parse_mounts(mountinfo: str) -> list[Mount]:
    """The cgroup mounts of a /proc/self/mountinfo (v2 controllers are filled in later)."""
    mounts = []
    for line in mountinfo.splitlines():
        fields, _, tail = line.partition(" - ")
        parts, extra = fields.split(), tail.split()
        if len(parts) < 5 or len(extra) < 3 or extra[0] not in ("cgroup", "cgroup2"):
            continue
        version = 2 if extra[0] == "cgroup2" else 1
        options = frozenset(extra[2].split(",")) if version == 1 else frozenset()
        controllers = frozenset(CONTROLLERS) & options
        mounts.append(Mount(version, Path(parts[4]), parts[3], controllers))
    return mounts


def parse_memberships(proc_cgroup: str) -> dict[str, str]:
    """controller -> our cgroup path, from /proc/self/cgroup ("" for the v2 hierarchy)."""
    found = {}
    for line in proc_cgroup.splitlines():
        _, _, rest = line.partition(":")
        names, _, path = rest.partition(":")
        for name in names.split(",") if names else [""]:
            found[name] = path
    return found


def plan_layout(mounts: list[Mount], memberships: dict[str, str]) -> Layout | None:
    """v2 if one cgroup2 mount offers every controller we limit; else v1's mounts; else None."""
    for mount in mounts:
        if mount.version == 2 and mount.controllers >= set(CONTROLLERS):
            parent = mount.point / PARENT
            return Layout(2, {c: parent for c in CONTROLLERS})
    parents: dict[str, Path] = {}
    for mount in mounts:
        if mount.version != 1:
            continue
        for controller in sorted(mount.controllers):
            own = memberships.get(controller, "/")
            # A container may mount only its own part of the hierarchy: strip that prefix.
            if mount.root != "/" and (own == mount.root or own.startswith(mount.root + "/")):
                own = own[len(mount.root) :]
            parents.setdefault(controller, mount.point / own.lstrip("/") / PARENT)
    if parents:
        return Layout(1, parents)
    v2 = [m for m in mounts if m.version == 2]
    if v2:
        # cgroup2 without our controllers (not enabled, or bound to v1): nothing to limit.
        return Layout(2, {c: v2[0].point / PARENT for c in v2[0].controllers})
    return None


def limit_files(version: int, controller: str, limits: Limits) -> list[tuple[str, str]]:
    """The files to write, in order, to apply `limits` for one controller."""
    quota = max(1000, round(limits.cpus * CPU_PERIOD_US))
    if version == 2:
        return {
            "memory": [("memory.max", str(limits.memory_mb * 1024 * 1024))],
            "cpu": [("cpu.max", f"{quota} {CPU_PERIOD_US}")],
            "pids": [("pids.max", str(limits.pids_max))],
        }[controller]
    return {
        "memory": [("memory.limit_in_bytes", str(limits.memory_mb * 1024 * 1024))],
        # The period first: a quota is checked against the period in force.
        "cpu": [("cpu.cfs_period_us", str(CPU_PERIOD_US)), ("cpu.cfs_quota_us", str(quota))],
        "pids": [("pids.max", str(limits.pids_max))],
    }[controller]


def detect() -> Layout | None:
    """This host's layout, keeping only the controllers we can create cgroups for."""
    try:
        mounts = parse_mounts(Path("/proc/self/mountinfo").read_text())
        memberships = parse_memberships(Path("/proc/self/cgroup").read_text())
    except OSError:
        return None
    mounts = [_with_v2_controllers(m) for m in mounts]
    layout = plan_layout(mounts, memberships)
    if layout is None:
        return None
    usable = {c: p for c, p in layout.parents.items() if _can_create_under(layout.version, p, c)}
    return Layout(layout.version, usable)


def create(layout: Layout, name: str, limits: Limits) -> list[Path]:
    """Create (or take over a stale) cgroup `name` with `limits`; its directories."""
    made: dict[Path, None] = {}
    for controller, parent in layout.parents.items():
        directory = parent / name
        _ensure_parent(layout.version, parent, controller)
        if directory not in made:
            directory.mkdir(exist_ok=True)
            made[directory] = None
        for filename, value in limit_files(layout.version, controller, limits):
            (directory / filename).write_text(value)
    return list(made)


def join(directories: list[Path], pid: int) -> None:
    for directory in directories:
        (directory / "cgroup.procs").write_text(str(pid))


def remove(layout: Layout, name: str) -> None:
    """Kill whatever still runs in cgroup `name` and remove it; missing is fine."""
    for directory in {parent / name for parent in layout.parents.values()}:
        _remove_one(directory)


def _remove_one(directory: Path) -> None:
    deadline = time.monotonic() + REMOVE_TIMEOUT
    while True:
        try:
            directory.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                raise
        _kill_members(directory)
        time.sleep(REMOVE_POLL)


def _kill_members(directory: Path) -> None:
    kill = directory / "cgroup.kill"
    if kill.exists():
        with contextlib.suppress(OSError):
            kill.write_text("1")
        return
    with contextlib.suppress(OSError):
        for pid in (directory / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(pid), signal.SIGKILL)


def _with_v2_controllers(mount: Mount) -> Mount:
    if mount.version != 2:
        return mount
    try:
        offered = (mount.point / "cgroup.controllers").read_text().split()
    except OSError:
        offered = []
    return Mount(2, mount.point, mount.root, frozenset(CONTROLLERS) & set(offered))


def _ensure_parent(version: int, parent: Path, controller: str) -> None:
    if version == 2:
        _enable_controller(parent.parent, controller)
    parent.mkdir(exist_ok=True)
    if version == 2:
        _enable_controller(parent, controller)


def _enable_controller(directory: Path, controller: str) -> None:
    # One at a time: a write naming several fails whole if one of them cannot be enabled.
    control = directory / "cgroup.subtree_control"
    if controller not in control.read_text().split():
        control.write_text(f"+{controller}")


def _can_create_under(version: int, parent: Path, controller: str) -> bool:
    probe = parent / f".probe-{os.getpid()}-{controller}"
    try:
        _ensure_parent(version, parent, controller)
        probe.mkdir(exist_ok=True)
        probe.rmdir()
    except OSError:
        return False
    return True
