"""npm and the file trees it works on, for the dependency installer (sandbox.agent.installer).

Everything here is a subprocess or a thread, so the agent's event loop never waits on a disk:
`cp` and `rm` for whole trees, a thread for the size walk, and npm itself. `npm_install` runs
one `npm install`, streams its output lines to the caller, and stops it (its whole process
group) when it runs past the time limit or node_modules grows past the size limit.

The flags, and why:

    --ignore-scripts      a package's install scripts (preinstall, install, postinstall) are code
                          from the registry that npm would run right away, on the machine,
                          before the user ran anything; a preview needs the packages' files,
                          which the browser loads (native builds would not run there anyway)
    --prefer-offline      the lockfile and the cache answer first: the common packages baked
                          into the image install without a single request
    --no-audit, --no-fund, --no-update-notifier
                          requests to the registry (or beyond) that install nothing
    --loglevel=http       one line per request: progress the editor sees as `log` lines
    --logs-max=0          no debug log files: the output the agent keeps is all there is
    --fetch-retries=1 ... fail within seconds when the registry is out of reach (a machine's
                          egress filter), rather than retrying for a minute
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import stat
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sandbox.agent.deps import InstallLimits
from sandbox.agent.logs import read_lines

NPM_FLAGS = (
    "--no-audit",
    "--no-fund",
    "--ignore-scripts",
    "--prefer-offline",
    "--no-update-notifier",
    "--progress=false",
    "--color=false",
    "--loglevel=http",
    "--logs-max=0",
    "--fetch-retries=1",
    "--fetch-retry-mintimeout=1000",
    "--fetch-retry-maxtimeout=5000",
)
SIZE_POLL = 1.0
KEEP_LINES = 400
MAX_LINE = 2000


@dataclass(frozen=True)
class NpmResult:
    ok: bool
    output: list[str]
    # Why the agent stopped npm (a limit), or None if npm ended by itself.
    stopped: str | None = None


async def npm_install(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    limits: InstallLimits,
    base_size: int,
    on_line: Callable[[str], None],
) -> NpmResult:
    """Run `argv` (npm install ...) in `cwd`, whose node_modules may grow by
    `limits.max_growth` over `base_size` bytes."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own group, so stopping it stops whatever it started
    )
    output: deque[str] = deque(maxlen=KEEP_LINES)
    stopped: list[str] = []
    try:
        async with asyncio.timeout(limits.timeout):
            async with asyncio.TaskGroup() as group:
                reader = group.create_task(_read_lines(process, output, on_line))
                watcher = group.create_task(
                    _watch_size(cwd / "node_modules", base_size, limits, process, stopped)
                )
                await process.wait()
                await reader
                watcher.cancel()
    except TimeoutError:
        stopped.append(f"npm install did not finish within {limits.timeout:g} s")
    finally:
        await _stop(process)
    if process.returncode == 0 and not stopped:
        # Faster than the watcher's first look, or grown since its last.
        size = await asyncio.to_thread(tree_size, cwd / "node_modules")
        if limits.over(size, base_size):
            stopped.append(limits.growth_failure(size, base_size))
    ok = process.returncode == 0 and not stopped
    return NpmResult(ok, list(output), stopped[0] if stopped else None)


async def _read_lines(
    process: asyncio.subprocess.Process, output: deque[str], on_line: Callable[[str], None]
) -> None:
    assert process.stdout is not None
    # A registry's long deprecation text is the package author's to write: read_lines cuts it.
    await read_lines(process.stdout, MAX_LINE, lambda raw: _keep_line(raw, output, on_line))


def _keep_line(raw: bytes, output: deque[str], on_line: Callable[[str], None]) -> None:
    line = raw[:MAX_LINE].decode("utf-8", "replace").rstrip()
    if line:
        output.append(line)
        on_line(line)


async def _watch_size(
    modules: Path,
    base_size: int,
    limits: InstallLimits,
    process: asyncio.subprocess.Process,
    stopped: list[str],
) -> None:
    while True:
        await asyncio.sleep(SIZE_POLL)
        size = await asyncio.to_thread(tree_size, modules)
        if limits.over(size, base_size):
            stopped.append(limits.growth_failure(size, base_size))
            _kill_group(process)
            return


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        _kill_group(process)
    await process.wait()


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def tree_size(root: Path) -> int:
    """Bytes of the regular files under `root`, symlinks not followed (0 if it is missing)."""
    total = 0
    pending = [root]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(info.st_mode):
                pending.append(Path(entry.path))
            elif stat.S_ISREG(info.st_mode):
                total += info.st_size
    return total


async def copy_tree(source: Path, target: Path) -> None:
    """A full copy of `source` (a directory, symlinks kept as links) at `target`, which must
    not exist. Reflinks where the filesystem has them; never hard links (sandbox.agent.installer
    says why)."""
    await _run("cp", "-a", "--reflink=auto", "--no-target-directory", str(source), str(target))


async def remove_tree(path: Path) -> None:
    """Remove `path`; a symlink is removed, never followed."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        await _run("rm", "-rf", "--one-file-system", str(path))


async def _run(*argv: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, errors = await process.communicate()
    if process.returncode != 0:
        raise OSError(f"{argv[0]} failed: {errors.decode(errors='replace').strip()[:500]}")
