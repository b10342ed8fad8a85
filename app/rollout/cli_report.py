"""`preview-orchestrator rollout report [--since S] [--json]`: the A/B report of
GET /api/admin/rollout/report at a shell, the same figures (`--json`: the same document).

    --since   seconds ago or an ISO-8601 time (default: a week ago); refused if in the future
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from app.rollout.ab_reader import read_report
from app.rollout.ab_schemas import report_since, report_view
from app.settings import Settings
from sql.database import open_pool
from sql.errors import DataError

_TIMES = (
    ("timeToFirstPreview", "time to first preview"),
    ("editToVisible", "edit to visible"),
    ("sessionLength", "session length"),
)
_RATES = (("errorRate", "error rate"), ("fallbackRate", "fallback rate"))


def add_parser(sub: Any) -> None:
    """The `rollout` command and its `report` action, on the CLI's subparsers (app/cli.py)."""
    rollout = sub.add_parser("rollout", help="the rollout from Appetize: the A/B report")
    rollout.set_defaults(run=run_command, operator=True)
    actions = rollout.add_subparsers(required=True, metavar="ACTION")
    report = actions.add_parser("report", help="the new system against Appetize, per arm")
    report.add_argument("--since", help="seconds ago or an ISO-8601 time (default: a week)")
    report.add_argument("--json", action="store_true", help="the admin API's JSON document")


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    if settings.database_url is None:
        print("preview-orchestrator: configuration error: DATABASE_URL: not set", file=sys.stderr)
        return 2
    now = datetime.now(UTC)
    try:
        since = report_since(args.since, now)
    except ValueError as exc:
        print(f"preview-orchestrator: refused (invalid_since): {exc}", file=sys.stderr)
        return 2
    try:
        document = asyncio.run(_read(settings.database_url, since, now))
    except DataError as exc:
        print(f"preview-orchestrator: database error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print("\n".join(describe(document)))
    return 0


async def _read(database_url: str, since: datetime, now: datetime) -> dict[str, Any]:
    db: AsyncConnectionPool = await open_pool(database_url, min_size=1, max_size=1)
    try:
        async with db.connection() as conn:
            report = await read_report(conn, since, now)
    finally:
        await db.close()
    return report_view(report).model_dump(mode="json", by_alias=True)


def describe(document: dict[str, Any]) -> list[str]:
    """The report as lines of text: per metric, each arm's figure and the difference."""
    new, appetize = document["arms"]["new"], document["arms"]["appetize"]
    compared = document["comparisons"]
    lines = [
        f"A/B report since {document['since']} (until {document['until']})",
        f"sessions: new {new['sessions']}, appetize {appetize['sessions']}",
        "differences are new - Appetize; significant: p < 0.05",
        "",
    ]
    for key, name in _TIMES:
        lines.append(f"{name} (ms)")
        for arm, figures in (("new", new), ("appetize", appetize)):
            lines.append(f"  {arm:<9}{_time(figures[key])}")
        for kind in ("medians", "means"):
            lines.append(f"  {kind[:-1] + ' diff':<11}{_difference(compared[key][kind])}")
    for key, name in _RATES:
        lines.append(name)
        for arm, figures in (("new", new), ("appetize", appetize)):
            lines.append(f"  {arm:<9}{_rate(figures[key])}")
        if key == "fallbackRate":
            lines.append("  not compared: the arms' fallback rates answer different questions")
        else:
            lines.append(f"  {'difference':<11}{_difference(compared[key])}")
    lines += ["", *(f"{name}: {text}" for name, text in document["definitions"].items())]
    return lines


def _interval(ci: dict[str, float] | None) -> str:
    return "—" if ci is None else f"[{ci['low']:g}, {ci['high']:g}]"


def _time(figure: dict[str, Any]) -> str:
    if figure["n"] == 0:
        return "n=0"
    return (
        f"n={figure['n']}  p50 {figure['p50Ms']:g} {_interval(figure['p50Ci'])}  "
        f"mean {figure['meanMs']:g} {_interval(figure['meanCi'])}"
    )


def _rate(figure: dict[str, Any]) -> str:
    if figure["rate"] is None:
        return f"{figure['count']}/0"
    return f"{figure['count']}/{figure['n']} = {figure['rate']:.2%} {_interval(figure['ci'])}"


def _difference(result: dict[str, Any] | None) -> str:
    if result is None:
        return "not enough sessions to compare"
    verdict = "SIGNIFICANT" if result["significant"] else "not significant"
    return (
        f"{result['difference']:g} {_interval(result['ci'])}  p={result['pValue']:.4g}  "
        f"{verdict} ({result['test']})"
    )
