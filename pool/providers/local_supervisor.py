"""The process that holds one local machine: `python -m pool.providers.local_supervisor`.

LocalProvider spawns it as the leader of the machine's process group and writes its `Plan`
(one JSON document, the machine token included) to its stdin; the machine's listening socket,
bound by the provider, is its fd 4. It then sets the machine up in this order, so that the
workload never starts unconfined, and exits with status 2 and one line on stderr (the
machine's log) if any step fails:

1. the cgroup, with its limits (the child joins it between fork and exec);
2. with a sandbox: a network namespace of its own, loopback up, the egress ruleset installed
   (`sandbox/egress.sh`'s, the one Fly machines get) and, inside it, a listener for each
   forwarded port (the orchestrator's);
3. the workspace handed to the machine's uid, and the token put in a pipe that becomes the
   child's fd 3, so it never appears on a command line;
4. the child (bwrap, see local_isolation) spawned from inside the namespace, after which this
   process returns to the host's namespace and forwards each connection accepted inside to
   the orchestrator, until the child exits; it exits with the child's status.

Without a sandbox in the plan (no root, no bwrap) it joins the cgroup itself and execs the
command: there is nothing to forward and nothing to wait for.

Signals. The provider stops a machine with SIGTERM to the process group, then SIGKILL. bwrap
runs with SIGTERM ignored (it would otherwise die at once and, through --die-with-parent,
SIGKILL the agent before its clean stop); the agent and Vite install their own handlers. When
the agent exits, bwrap's init takes the rest of the sandbox with it. If this process is
killed outright, --die-with-parent kills the sandbox.

A network namespace belongs to a thread: `unshare` moves this (still single-threaded)
process into the new one, sockets created there stay there, and `setns` moves it back.
Only the standard library, to start fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import functools
import ipaddress
import json
import os
import signal
import socket
import struct
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NoReturn

from pool.providers import local_cgroup

TOKEN_FD = 3
LISTEN_FD = 4
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
STOP_GRACE = 3.0
# The address a local machine's connections to the orchestrator come from (see _peer_address).
SANDBOX_PEER = "127.0.0.2"
CHUNK = 256 * 1024


class SetupError(RuntimeError):
    """A step before the workload starts failed: the machine must not start."""


@dataclass(frozen=True)
class Forward:
    """Connections to `listen` inside the namespace go to `connect` on the host."""

    listen: tuple[str, int]
    connect: tuple[str, int]


@dataclass(frozen=True)
class Plan:
    argv: list[str]
    env: dict[str, str]
    token: str
    # cgroup name and limits, or None where the host allows no limits.
    cgroup: str | None = None
    limits: local_cgroup.Limits | None = None
    # With a sandbox: the machine's own network namespace and uid.
    sandbox: bool = False
    uid: int | None = None
    workspace: str = ""
    ruleset: str | None = None
    nft: str | None = None
    forwards: list[Forward] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Plan:
        raw = json.loads(text)
        limits = raw.pop("limits")
        forwards = raw.pop("forwards")
        return cls(
            **raw,
            limits=local_cgroup.Limits(**limits) if limits else None,
            forwards=[
                Forward(
                    (str(f["listen"][0]), int(f["listen"][1])),
                    (str(f["connect"][0]), int(f["connect"][1])),
                )
                for f in forwards
            ],
        )


def main() -> None:
    try:
        plan = Plan.from_json(sys.stdin.read())
    except (ValueError, TypeError, KeyError) as exc:
        _fail(f"unreadable plan: {exc}")
    # The plan's pipe (and the token in it) must not reach the workload.
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    try:
        if plan.sandbox:
            sys.exit(_supervise(plan))
        _exec_plain(plan)
    except (OSError, SetupError, subprocess.SubprocessError) as exc:
        _fail(str(exc))


def _fail(message: str) -> NoReturn:
    print(f"local machine supervisor: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def _exec_plain(plan: Plan) -> None:
    cgroups = _make_cgroup(plan)
    local_cgroup.join(cgroups, os.getpid())
    _token_pipe(plan.token, TOKEN_FD)
    os.execve(plan.argv[0], plan.argv, plan.env)


def _supervise(plan: Plan) -> int:
    cgroups = _make_cgroup(plan)
    if plan.uid is not None:
        _hand_over(Path(plan.workspace), plan.uid)
    _token_pipe(plan.token, TOKEN_FD)
    host_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        _enter_new_netns()
        try:
            _loopback_up()
            if plan.ruleset is not None and plan.nft is not None:
                _install_ruleset(plan.nft, plan.ruleset)
            listeners = [
                (sock, f.connect) for f in plan.forwards if (sock := _listen(f.listen)) is not None
            ]
            child = subprocess.Popen(
                plan.argv,
                env=plan.env,
                stdin=subprocess.DEVNULL,
                pass_fds=(TOKEN_FD, LISTEN_FD),
                preexec_fn=lambda: _in_child(cgroups),
            )
        finally:
            _setns(host_ns)
    finally:
        os.close(host_ns)
    os.close(TOKEN_FD)
    os.close(LISTEN_FD)
    code = asyncio.run(_forward_until_exit(child, listeners))
    return code if code >= 0 else 128 - code


def _make_cgroup(plan: Plan) -> list[Path]:
    if plan.cgroup is None or plan.limits is None:
        return []
    layout = local_cgroup.detect()
    if layout is None or not layout.parents:
        raise SetupError("cgroup limits were planned but no cgroup is writable now")
    # A cgroup left by a predecessor that was killed outright is taken over, limits re-applied.
    return local_cgroup.create(layout, plan.cgroup, plan.limits)


def _in_child(cgroups: list[Path]) -> None:
    # Between fork and exec, single-threaded: join before anything of the workload exists.
    local_cgroup.join(cgroups, os.getpid())
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _hand_over(workspace: Path, uid: int) -> None:
    """Make the workspace the machine uid's; only when it is not already (first boot, reset)."""
    if workspace.lstat().st_uid == uid:
        return
    os.lchown(workspace, uid, uid)
    for directory, dirs, files in os.walk(workspace):
        for name in dirs + files:
            os.lchown(os.path.join(directory, name), uid, uid)


def _token_pipe(token: str, target: int) -> None:
    read_end, write_end = os.pipe()
    # A token is a few dozen bytes: far below a pipe's buffer, so this never blocks.
    os.write(write_end, token.encode())
    os.close(write_end)
    if read_end == target:
        os.set_inheritable(target, True)
    else:
        os.dup2(read_end, target)
        os.close(read_end)


_libc = ctypes.CDLL(None, use_errno=True)


def _enter_new_netns() -> None:
    if _libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        request = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(probe, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(probe, SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | IFF_UP))


def _install_ruleset(nft: str, ruleset: str) -> None:
    done = subprocess.run(
        [nft, "-f", "-"], input=ruleset, capture_output=True, text=True, check=False, timeout=10
    )
    if done.returncode != 0:
        raise SetupError(f"nft refused the egress ruleset: {done.stderr.strip()}")


def _listen(address: tuple[str, int]) -> socket.socket | None:
    host, port = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        if family == socket.AF_INET6 and exc.errno == errno.EAFNOSUPPORT:
            return None  # a host without IPv6: `localhost` resolves to 127.0.0.1 as well
        raise
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if family == socket.AF_INET6 and exc.errno == errno.EADDRNOTAVAIL:
            return None
        raise
    sock.listen(64)
    sock.setblocking(False)
    return sock


async def _forward_until_exit(
    child: subprocess.Popen[bytes], listeners: list[tuple[socket.socket, tuple[str, int]]]
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    relays = Relays()
    servers = [
        await asyncio.start_server(functools.partial(relays.relay, target), sock=sock)
        for sock, target in listeners
    ]
    exited = asyncio.ensure_future(asyncio.to_thread(child.wait))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([exited, stopping], return_when=asyncio.FIRST_COMPLETED)
    if not exited.done():
        # Usually the whole group got SIGTERM already; pass it on in case only we did. bwrap
        # ignores it, the agent stops cleanly.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(os.getpgrp(), signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(exited), STOP_GRACE)
        except TimeoutError:
            child.kill()  # bwrap; --die-with-parent takes the sandbox with it
    code = await exited
    stopping.cancel()
    for server in servers:
        server.close()
    await relays.close()
    return code


class Relays:
    """The open connections from inside the namespace, each copied both ways to its target.

    They are closed and awaited at exit rather than cancelled: on Python 3.11 a cancelled
    connection handler of asyncio.start_server is reported as an error."""

    def __init__(self) -> None:
        self._open: dict[asyncio.Task[None], list[asyncio.StreamWriter]] = {}

    async def relay(
        self, target: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        writers = self._open[task] = [writer]
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                *target, local_addr=_peer_address(target[0])
            )
        except OSError:
            return
        else:
            writers.append(upstream_writer)
            await asyncio.gather(_copy(reader, upstream_writer), _copy(upstream_reader, writer))
        finally:
            for each in writers:
                each.close()
            del self._open[task]

    async def close(self) -> None:
        for writers in self._open.values():
            for writer in writers:
                writer.close()
        if self._open:
            await asyncio.wait(list(self._open), timeout=STOP_GRACE)


def _peer_address(host: str) -> tuple[str, int] | None:
    """Connections from a machine reach the orchestrator from SANDBOX_PEER, so that it can tell
    them from the developer's own (dev serves both on one port) and let them reach only the
    sandbox socket. Only on IPv4 loopback, where every 127.x address is this host's."""
    try:
        loopback = ipaddress.ip_address(host) in ipaddress.ip_network("127.0.0.0/8")
    except ValueError:
        loopback = False
    return (SANDBOX_PEER, 0) if loopback else None


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # Half-close: an end of input is passed on, and the other direction goes on until its own.
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()


if __name__ == "__main__":
    main()
