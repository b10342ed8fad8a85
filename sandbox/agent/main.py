"""Entry point: `python -m sandbox.agent --machine-id ID --orchestrator URL ...`.

Every option can also come from the environment (PREVIEW_MACHINE_ID, PREVIEW_ORCHESTRATOR_URL,
PREVIEW_PORT, PREVIEW_HOST, PREVIEW_WORKSPACE, PREVIEW_TEMPLATE, PREVIEW_TEMPLATES_DIR), which
is how the machine image is configured. Dependency installs (sandbox.agent.installer) read
PREVIEW_NPM_REGISTRY (a registry mirror), PREVIEW_NPM_CACHE (npm's cache; default: in the
workspace's agent directory), PREVIEW_DEPS_TIMEOUT (seconds) and PREVIEW_DEPS_MAX_MB (how much
an install may add to node_modules).

The machine token is never an argument: a command line is visible to every user of the host
(`ps`). It comes from PREVIEW_MACHINE_TOKEN (the image) or from a file descriptor
(`--token-fd N`, a pipe the local provider fills), read to its end and closed at start.
`--listen-fd N` serves on an inherited listening socket instead of binding `--port`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import re
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

from sandbox.agent.agent import Agent, AgentConfig
from sandbox.agent.deps import InstallLimits
from sandbox.agent.errors import AgentError
from sandbox.agent.files import Workspace
from sandbox.agent.installer import InstallConfig, private_install_is_current
from sandbox.agent.paths import AGENT_DIR
from sandbox.agent.state import StateFile

TEMPLATE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
DEFAULT_TEMPLATES = Path(__file__).resolve().parents[1] / "templates"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="sandbox.agent", description=__doc__)
    parser.add_argument("--machine-id", default=env("PREVIEW_MACHINE_ID") or env("FLY_MACHINE_ID"))
    parser.add_argument("--token-fd", type=int, help="read the machine token from this fd")
    parser.add_argument("--orchestrator", default=env("PREVIEW_ORCHESTRATOR_URL"))
    parser.add_argument("--port", type=int, default=int(env("PREVIEW_PORT", "8080")))
    parser.add_argument("--host", default=env("PREVIEW_HOST", "127.0.0.1"))
    parser.add_argument(
        "--workspace", type=Path, default=Path(env("PREVIEW_WORKSPACE", "workspace"))
    )
    parser.add_argument("--template", default=env("PREVIEW_TEMPLATE", "react-web"))
    parser.add_argument(
        "--templates-dir",
        type=Path,
        default=Path(env("PREVIEW_TEMPLATES_DIR", str(DEFAULT_TEMPLATES))),
    )
    parser.add_argument("--listen-fd", type=int, help="serve on this inherited listening socket")
    parser.add_argument("--ack-timeout", type=float, default=2.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        args.dependencies = install_config(os.environ)
    except ValueError as exc:
        parser.error(str(exc))
    args.token = env("PREVIEW_MACHINE_TOKEN")
    if args.token_fd is not None:
        try:
            args.token = _read_token(args.token_fd)
        except OSError as exc:
            parser.error(f"--token-fd {args.token_fd}: {exc}")
    for name in ("machine_id", "orchestrator"):
        if not getattr(args, name):
            parser.error(f"--{name.replace('_', '-')} is required")
    if not args.token:
        parser.error("no machine token: set PREVIEW_MACHINE_TOKEN or pass --token-fd")
    if not TEMPLATE_NAME.fullmatch(args.template):
        parser.error(f"--template {args.template!r} is not a template name")
    return args


def install_config(env: Mapping[str, str]) -> InstallConfig:
    limits = InstallLimits()
    timeout = _positive(env, "PREVIEW_DEPS_TIMEOUT", limits.timeout)
    max_mb = _positive(env, "PREVIEW_DEPS_MAX_MB", limits.max_growth / 2**20)
    cache = env.get("PREVIEW_NPM_CACHE")
    return InstallConfig(
        limits=InstallLimits(timeout=timeout, max_growth=int(max_mb * 2**20)),
        cache=Path(cache) if cache else None,
        registry=env.get("PREVIEW_NPM_REGISTRY") or None,
    )


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {raw!r}") from None
    if not 0 <= value < 10**6:
        raise ValueError(f"{name} must be between 0 and 1000000, not {raw!r}")
    return value


def _read_token(fd: int) -> str:
    with os.fdopen(fd, "rb") as source:
        return source.read(4096).decode().strip()


async def serve(args: argparse.Namespace) -> None:
    workspace = Workspace(args.workspace)
    state_file = StateFile(workspace.root / AGENT_DIR / "state.json")
    # A workspace without a state file is fresh (or its first preparation was interrupted):
    # copy the template. One with a state file holds the project as last patched: keep it.
    fresh = not state_file.exists()
    template_dir = args.templates_dir / args.template
    # A restarted agent keeps the dependencies it installed for this session's package.json.
    keep = not fresh and private_install_is_current(workspace.root, template_dir)
    workspace.prepare(template_dir, copy_project=fresh, keep_modules=keep)
    if fresh:
        state_file.save(state_file.load())
    config = AgentConfig(
        machine_id=args.machine_id,
        token=args.token,
        orchestrator=args.orchestrator,
        host=args.host,
        port=args.port,
        ack_timeout=args.ack_timeout,
        listen_fd=args.listen_fd,
        dependencies=args.dependencies,
    )
    agent = Agent(config, workspace, state_file)
    # Startup's objects (modules, the template's file list) out of every later full collection,
    # as the orchestrator does (pool/core/gc_pauses.py): a full collection walking them is a pause
    # on every edit's way through the agent.
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await agent.run(stop)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        asyncio.run(serve(args))
    except* AgentError as group:
        for exc in group.exceptions:
            print(f"sandbox agent: {exc}", file=sys.stderr)
        sys.exit(2)
