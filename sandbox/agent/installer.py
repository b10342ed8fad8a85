"""Dependency changes: `npm install` inside the machine when package.json's dependencies change.

The agent asks the installer twice for each hydrate and patch (sandbox.agent.agent):

    stage(package.json)    before the write. If the dependencies changed (sandbox.agent.deps),
                           npm installs them into a private copy of node_modules under the
                           agent's directory, while the dev server goes on serving the old tree
    commit(staged, write)  the write itself; with something staged, inside a planned restart of
                           the dev server: stop it, write the files, swap node_modules, start it

Why a restart: Vite resolves packages through the real path of node_modules, cached for the life
of the process. Swapped under a running Vite, the tree made it crash (it read the new package at
the old real path); a fresh Vite also re-optimises the dependencies, whose hash covers
node_modules/.package-lock.json. Open pages reconnect and reload.

Why before the write: the patch that adds a package often imports it too (or the next one does).
Written first, Vite would report "failed to resolve import" while npm runs. Frames are handled
one at a time (sandbox.agent.link), so the frames after a dependency change wait for its install,
within its time limit; the event loop does not wait (npm, cp and rm are subprocesses, the size
walk a thread), so the front, the HMR listener, logs and pings go on.

The private copy is made with cp (reflinks where the filesystem has them), never hard links: a
hard link is the shared file itself, and npm rewrote node_modules/.package-lock.json in place
(measured), which through a link would change the template's install under every machine that
uses it. npm's cache is the machine's own, in the agent's directory (or PREVIEW_NPM_CACHE),
seeded on the first install from the image's read-only cache of the common packages
(sandbox.templates.install); a reset wipes it with the workspace, so nothing one session put in
it reaches the next.

A failed install (npm's error, the time or the size limit) leaves the workspace's node_modules as
it was; package.json is written all the same (it is the editor's file) and a `buildError` names
package.json, the package and its line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.agent import deps, npm
from sandbox.agent.deps import Action, DependencySet, InstallLimits, Plan
from sandbox.agent.errors import DependencyFailed
from sandbox.agent.files import Change, Write
from sandbox.agent.hmr import CompileFailed
from sandbox.agent.logs import LogPump
from sandbox.agent.monitor import DevServerMonitor
from sandbox.agent.paths import AGENT_DIR, NODE_MODULES
from sandbox.agent.protocol import Status

logger = logging.getLogger(__name__)

# In a private node_modules: what it holds (sandbox.agent.deps.stamp) and the lockfile it was
# installed from (the next install starts from it).
STAMP = ".preview-deps.json"
LOCK = ".preview-lock.json"
# Written by sandbox.templates.install, in the templates directory and in each template's
# node_modules.
INSTALL_STAMP = ".preview-install.json"
SEED_CACHE = ".npm-cache"
COMMON_LOCK = "common-packages.lock.json"


@dataclass(frozen=True)
class InstallConfig:
    """From the machine's environment (sandbox.agent.main)."""

    limits: InstallLimits = field(default_factory=InstallLimits)
    # npm's cache: PREVIEW_NPM_CACHE, else the agent's directory (wiped with the workspace).
    cache: Path | None = None
    # PREVIEW_NPM_REGISTRY: a registry mirror the machine's egress filter lets it reach.
    registry: str | None = None


@dataclass(frozen=True)
class Staged:
    """An install ready to swap in: a private node_modules, or None for the shared one."""

    plan: Plan
    modules: Path | None


def manifest_in(changes: Iterable[Change], *, whole: bool = False) -> bytes | None:
    """package.json's new content in a change set: None if it is not touched; a deleted one (or,
    for a whole snapshot, a missing one) has no dependencies of its own."""
    for change in changes:
        if change.path == deps.MANIFEST:
            return change.data if isinstance(change, Write) else b"{}"
    return b"{}" if whole else None


def private_install_is_current(root: Path, template_dir: Path) -> bool:
    """Whether the workspace's node_modules is a private install made from the template's shared
    install as it is now (then a restarted agent keeps it)."""
    modules = root / NODE_MODULES
    if modules.is_symlink() or not modules.is_dir():
        return False
    return _private_install(modules, template_dir / NODE_MODULES) is not None


def _private_install(modules: Path, shared: Path) -> DependencySet | None:
    """What a private node_modules records it holds, if made from `shared` as it is now."""
    return deps.read_stamp(_read_json(modules / STAMP), _read_json(shared / INSTALL_STAMP))


class DependencyInstaller:
    def __init__(
        self,
        root: Path,
        template_dir: Path | None,
        monitor: DevServerMonitor,
        logs: LogPump,
        config: InstallConfig,
    ) -> None:
        self._root = root
        self._template_dir = template_dir
        self._monitor = monitor
        self._logs = logs
        self._config = config
        self._dir = root / AGENT_DIR / "deps"
        self._cache = config.cache or self._dir / "npm-cache"
        self._npm = shutil.which("npm")
        self._template: DependencySet | None = None
        self._base_size: int | None = None
        # An install failed and nothing has settled package.json's dependencies since.
        self._failed = False
        if template_dir is not None:
            self._template = deps.parse_manifest(
                (template_dir / deps.MANIFEST).read_text(encoding="utf-8")
            )
            # What an agent stopped mid-install left behind.
            for leftover in ("stage", "old"):
                _remove_now(self._dir / leftover)

    @property
    def _shared(self) -> Path:
        assert self._template_dir is not None
        return (self._template_dir / NODE_MODULES).resolve()

    def installed(self) -> DependencySet | None:
        """What node_modules holds; None when it is a private install with no readable record."""
        modules = self._root / NODE_MODULES
        if modules.is_symlink() or not modules.exists():
            return self._template
        return _private_install(modules, self._shared)

    async def stage(self, manifest: bytes | None) -> Staged | None:
        """Install what `manifest` (package.json's new bytes) adds, before it is written."""
        if manifest is None or self._template is None:
            return None
        text = manifest.decode("utf-8", "replace")
        try:
            plan = deps.decide(deps.parse_manifest(text), self.installed(), self._template)
        except DependencyFailed as exc:
            await self._report(exc)
            return None
        for note in plan.ignored:
            await self._logs.emit("devserver", "warn", f"npm: {note}")
        if plan.action is Action.KEEP:
            if self._failed:
                # The dependencies that failed are gone from package.json: look again.
                self._failed = False
                self._monitor.recheck()
            return None
        if plan.action is Action.SHARE:
            return Staged(plan, None)
        return await self._install(plan, text)

    async def commit(self, staged: Staged | None, write: Callable[[], list[str]]) -> list[str]:
        """Run `write`; with an install staged, while the dev server is stopped, and swap it in."""
        if staged is None:
            return write()
        await self._set_status("restarting the dev server with the new dependencies")

        def write_and_swap() -> list[str]:
            changed = write()
            self._swap(staged.modules)
            return changed

        try:
            changed = await self._monitor.devserver.restart(write_and_swap)
        finally:
            await npm.remove_tree(self._dir / "old")
            await npm.remove_tree(self._dir / "stage")
        self._failed = False
        logger.info("dependencies now: %s", staged.plan.describe())
        return changed

    async def _install(self, plan: Plan, text: str) -> Staged | None:
        stage = self._dir / "stage"
        await self._set_status(f"installing {plan.describe()}")
        started = time.monotonic()
        try:
            result = await self._run_npm(plan, stage)
        except OSError as exc:
            result = npm.NpmResult(False, [], f"could not prepare the install: {exc}")
        if not result.ok:
            await npm.remove_tree(stage)
            reasons = [result.stopped] if result.stopped else []
            failed = (
                deps.failure(plan, text, reasons)
                if reasons
                else deps.install_failure(result.output, plan, text)
            )
            await self._report(failed)
            return None
        modules = stage / NODE_MODULES
        base = _read_json(self._shared / INSTALL_STAMP)
        (modules / STAMP).write_text(json.dumps(deps.stamp(base, plan.wanted)))
        os.replace(stage / "package-lock.json", modules / LOCK)
        note = f"npm: installed {plan.describe()} in {time.monotonic() - started:.1f} s"
        await self._logs.emit("devserver", "info", note)
        return Staged(plan, modules)

    async def _run_npm(self, plan: Plan, stage: Path) -> npm.NpmResult:
        if self._npm is None:
            return npm.NpmResult(False, [], "npm is not installed on this machine")
        current = (self._root / NODE_MODULES).resolve()
        await npm.remove_tree(stage)
        stage.mkdir(parents=True)
        await npm.copy_tree(current, stage / NODE_MODULES)
        lock = self._base_lock(current)
        (stage / deps.MANIFEST).write_text(json.dumps(deps.install_manifest(plan), indent=2))
        (stage / "package-lock.json").write_text(json.dumps(lock, indent=2))
        await self._seed_cache()
        if self._base_size is None:
            self._base_size = await asyncio.to_thread(npm.tree_size, self._shared)
        argv = [self._npm, "install", *npm.NPM_FLAGS, f"--cache={self._cache}"]
        if self._config.registry:
            argv.append(f"--registry={self._config.registry}")
        env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": os.environ.get("HOME", "/")}
        return await npm.npm_install(
            argv,
            stage,
            env,
            self._config.limits,
            self._base_size,
            lambda line: self._logs.feed(f"npm: {line}"),
        )

    def _base_lock(self, current: Path) -> dict[str, Any]:
        """The lockfile of the tree being copied, with the image's common packages added."""
        assert self._template_dir is not None
        lock = _read_json(current / LOCK) if current != self._shared else None
        if not isinstance(lock, dict):
            lock = _read_json(self._template_dir / "package-lock.json")
        common = _read_json(self._template_dir.parent / COMMON_LOCK)
        if not isinstance(lock, dict):
            return {}
        return deps.with_common_packages(lock, common) if isinstance(common, dict) else lock

    async def _seed_cache(self) -> None:
        """npm's cache, first time: a copy of the image's (npm needs a cache it can write)."""
        if self._cache.exists():
            return
        assert self._template_dir is not None
        seed = self._template_dir.parent / SEED_CACHE
        self._cache.parent.mkdir(parents=True, exist_ok=True)
        if seed.is_dir():
            await npm.copy_tree(seed, self._cache)
        else:
            self._cache.mkdir()

    def _swap(self, modules: Path | None) -> None:
        """Put `modules` (None: the shared install) at node_modules. Two renames, not atomic:
        this runs while the dev server is stopped, and nothing else reads the tree."""
        link = self._root / NODE_MODULES
        if modules is None:
            modules = self._dir / "shared.link"
            modules.unlink(missing_ok=True)
            modules.symlink_to(self._shared, target_is_directory=True)
        if link.is_symlink() or link.exists():
            os.rename(link, self._dir / "old")
        os.rename(modules, link)

    async def _set_status(self, detail: str) -> None:
        booting = self._monitor.status is Status.BOOTING
        await self._monitor.set_status(Status.BOOTING if booting else Status.BUILDING, detail)

    async def _report(self, failed: DependencyFailed) -> None:
        self._failed = True
        logger.warning("dependency install failed: %s", failed.message)
        await self._monitor.report_build_error(
            CompileFailed(failed.message, deps.MANIFEST, failed.line, failed.column)
        )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def _remove_now(path: Path) -> None:
    if path.is_symlink():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)
