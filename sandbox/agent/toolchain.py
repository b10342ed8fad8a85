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
    # The dev server's script in the workspace, and its arguments after it for a port.
    entry: Path
    arguments: Callable[[int], list[str]]
    listen: Callable[[int, Path, hmr.OnEvent], Awaitable[None]]
    # (port, workspace root, timeout) -> what a first page visit found
    warm: Callable[[int, Path, float], Awaitable[CrawlResult]]
    env: Mapping[str, str] = field(default_factory=dict)

    def argv(self, node: str | None, root: Path, port: int, preload: str) -> list[str]:
        if node is None:
            raise TemplateMissing("node is not installed")
        script = root / self.entry
        if not script.is_file():
            raise TemplateMissing(f"{script} is missing: is the template installed?")
        return [node, preload, str(script), *self.arguments(port)]


def _vite_arguments(port: int) -> list[str]:
    return [
        "--port", str(port), "--strictPort", "--host", HOST,
        "--clearScreen", "false",
        # Loads vite.config.js with Node itself: the default bundles it to a temporary
        # file inside node_modules, which is the shared (and in the image read-only) install.
        "--configLoader", "native",
    ]  # fmt: skip


async def _vite_warm(port: int, root: Path, timeout: float) -> CrawlResult:
    return await warm(port, timeout=timeout)


VITE = Toolchain("vite", VITE_BIN, _vite_arguments, hmr.listen, _vite_warm)
METRO = Toolchain("metro", EXPO_CLI, metro.arguments, metro.listen, metro.warm, metro.ENV)


def for_template(template_dir: Path | None) -> Toolchain:
    if template_dir is not None and (template_dir / EXPO_CLI).is_file():
        return METRO
    return VITE
