"""Which dev server a template runs, and how the agent talks to it.

Two kinds, chosen by the template's install (never by the workspace, whose package.json is the
user's to edit): a template whose node_modules has Expo's CLI runs Metro through `expo start`
(sandbox.agent.metro); every other one runs Vite (sandbox.agent.hmr). The rest of the agent
(pacing, acks, status, the front) is the same for both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.agent import hmr, metro
from sandbox.agent.errors import TemplateMissing
from sandbox.agent.probe import HOST, CrawlResult, warm

EXPO_CLI = Path("node_modules") / "expo" / "bin" / "cli"
VITE_BIN = Path("node_modules") / "vite" / "bin" / "vite.js"


@dataclass(frozen=True)
class Toolchain:
    name: str
    # (node, workspace root, port, preload flag) -> argv
    command: Callable[[str, Path, int, str], list[str]]
    listen: Callable[[int, Path, hmr.OnEvent], Awaitable[None]]
    # (port, workspace root, timeout) -> what a first page visit found
    warm: Callable[[int, Path, float], Awaitable[CrawlResult]]
    entry: Path
    env: Mapping[str, str] = field(default_factory=dict)

    def argv(self, node: str | None, root: Path, port: int, preload: str) -> list[str]:
        if node is None:
            raise TemplateMissing("node is not installed")
        if not (root / self.entry).is_file():
            raise TemplateMissing(f"{root / self.entry} is missing: is the template installed?")
        return self.command(node, root, port, preload)


def _vite_command(node: str, root: Path, port: int, preload: str) -> list[str]:
    return [
        node, preload, str(root / VITE_BIN),
        "--port", str(port), "--strictPort", "--host", HOST,
        "--clearScreen", "false",
        # Loads vite.config.js with Node itself: the default bundles it to a temporary
        # file inside node_modules, which is the shared (and in the image read-only) install.
        "--configLoader", "native",
    ]  # fmt: skip


async def _vite_warm(port: int, root: Path, timeout: float) -> CrawlResult:
    return await warm(port, timeout=timeout)


async def _metro_warm(port: int, root: Path, timeout: float) -> CrawlResult:
    return await metro.warm(port, root, timeout=timeout)


VITE = Toolchain("vite", _vite_command, hmr.listen, _vite_warm, VITE_BIN)
METRO = Toolchain("metro", metro.command, metro.listen, _metro_warm, EXPO_CLI, metro.ENV)


def for_template(template_dir: Path | None) -> Toolchain:
    if template_dir is not None and (template_dir / EXPO_CLI).is_file():
        return METRO
    return VITE
