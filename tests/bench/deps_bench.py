"""Dependency benchmark (issue 13): time to install one small dependency, from the patch that
adds it to package.json (and imports it in src/App.jsx) to the agent's `applied`, i.e. installed,
the dev server restarted onto it and the files taken in, and to `status ready` (the page loads).

    .venv/bin/python -m tests.bench.deps_bench              # 10 rounds per arm
    .venv/bin/python -m tests.bench.deps_bench --rounds 3   # smoke run

One real agent (react-web, Vite, npm) behind the fake gateway of
tests/integration/test_sandbox_agent, on this machine. Two arms, interleaved:

  * common: `clsx`, one of the image's common packages, with npm pointed at a registry nobody
    answers (PREVIEW_NPM_REGISTRY): the lockfile fast path, from the seeded cache alone;
  * registry: `left-pad`, not a common package, from this host's npm registry.

Each round starts like a session's first install: the machine's npm cache is removed (the
installer seeds it again from the image's), and package.json is back to the template's
(the shared install, which the round's revert restores: not timed). Targets: the common arm's
p50 to `applied` <= 2 s; the registry arm is reported, since it measures the registry too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.bench.common import machine_description, percentile, verdict
from tests.e2e.deps_app import CLSX, LEFT_PAD, TEMPLATE, adding
from tests.e2e.stack import app_source, install_templates
from tests.integration.test_sandbox_agent import (
    AgentProcess,
    Gateway,
    start_agent,
    wait_ready,
)

TARGET_COMMON_P50 = 2.0
STEP_TIMEOUT = 120.0
UNREACHABLE_REGISTRY = "http://127.0.0.1:9/"


class Bench:
    def __init__(self, root: Path) -> None:
        self.root = root

    async def start(self, name: str, env: dict[str, str]) -> tuple[Gateway, AgentProcess]:
        gateway = Gateway(machine_id=f"bench-{name}")
        await gateway.start()
        agent = await start_agent(
            gateway, self.root / name / "workspace", self.root / f"{name}.log", env=env
        )
        await wait_ready(gateway)
        return gateway, agent

    async def patch(
        self, gateway: Gateway, changes: list[dict[str, str]]
    ) -> tuple[float, float, dict[str, Any] | None]:
        """Seconds to `applied` and to `status ready`, and the buildError if one came."""
        seq = len(gateway.stream) + 1  # each machine has its own stream
        mark = gateway.mark()
        started = time.monotonic()
        await gateway.patch(seq, changes)
        await gateway.applied(seq, after=mark, timeout=STEP_TIMEOUT)
        applied = time.monotonic() - started
        await gateway.expect(
            "status", lambda m: m["state"] == "ready", after=mark, timeout=STEP_TIMEOUT
        )
        errors = gateway.since(mark, "buildError")
        return applied, time.monotonic() - started, errors[0] if errors else None

    async def round(
        self, gateway: Gateway, agent: AgentProcess, package: tuple[str, ...]
    ) -> dict[str, Any]:
        shutil.rmtree(agent.workspace / ".preview-agent/deps/npm-cache", ignore_errors=True)
        mark = gateway.mark()
        applied, ready, error = await self.patch(gateway, adding(package, "Bench"))
        if error is not None:
            raise RuntimeError(f"installing {package[0]} failed: {error['message']}")
        npm_seconds = _npm_seconds(gateway, mark)
        # Back to the template's shared install, for the next round.
        await self.patch(
            gateway,
            [
                {"path": "package.json", "content": (TEMPLATE / "package.json").read_text()},
                {"path": "src/App.jsx", "content": app_source("Bench")},
            ],
        )
        return {"applied": applied, "ready": ready, "npm": npm_seconds}


def _npm_seconds(gateway: Gateway, mark: int) -> float | None:
    for message in gateway.since(mark, "log"):
        text = message["message"]
        if text.startswith("npm: installed ") and text.endswith(" s"):
            return float(text.rsplit(" in ", 1)[1][:-2])
    return None


async def run(rounds: int) -> dict[str, Any]:
    install_templates("react-web")
    with tempfile.TemporaryDirectory(prefix="deps-bench-") as scratch:
        bench = Bench(Path(scratch))
        arms = {
            "common": (CLSX, {"PREVIEW_NPM_REGISTRY": UNREACHABLE_REGISTRY}),
            "registry": (LEFT_PAD, {}),
        }
        machines = {arm: await bench.start(arm, env) for arm, (_, env) in arms.items()}
        samples: dict[str, list[dict[str, Any]]] = {arm: [] for arm in arms}
        try:
            for _ in range(rounds):
                for arm, (package, _) in arms.items():
                    gateway, agent = machines[arm]
                    samples[arm].append(await bench.round(gateway, agent, package))
        finally:
            for gateway, agent in machines.values():
                await agent.stop()
                await gateway.stop()
    report: dict[str, Any] = {"machine": machine_description(), "rounds": rounds, "arms": {}}
    for arm, runs in samples.items():
        figures = {}
        for key in ("applied", "ready", "npm"):
            values = [run[key] for run in runs if run[key] is not None]
            figures[key] = {"p50": percentile(values, 50), "p90": percentile(values, 90)}
        report["arms"][arm] = {"package": arms[arm][0][0], **figures, "runs": runs}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report = asyncio.run(run(args.rounds))
    for arm, figures in report["arms"].items():
        print(
            f"{arm:>8} ({figures['package']}): applied p50 {figures['applied']['p50']:.2f} s "
            f"p90 {figures['applied']['p90']:.2f} s; ready p50 {figures['ready']['p50']:.2f} s; "
            f"npm p50 {figures['npm']['p50']:.2f} s"
        )
    common = report["arms"]["common"]["applied"]["p50"]
    ok = common <= TARGET_COMMON_P50
    print(f"common p50 to applied: {common:.2f} s  target <= {TARGET_COMMON_P50} s  {verdict(ok)}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
