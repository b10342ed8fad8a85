"""`preview-orchestrator flags show | set | audit`: the admin API's flag routes at a shell, with
the same rules and words (app/rollout/flag_admin.py). A change made here is audited as
`cli:{login}@{host}` and announced to every web process like one made over HTTP.

    flags show [--json]
    flags set [--kill-switch on|off] [--percentage P]
              [--user ID BACKEND] [--project ID BACKEND] [--plan NAME BACKEND]
                  BACKEND: new | appetize | none (none removes the override)
    flags audit [--limit N] [--flag FLAG] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import re
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from app.rollout.decision import Choice
from app.rollout.flag_admin import (
    FlagAdmin,
    FlagAdminError,
    change_json,
    override_json,
    parse_choice,
    parse_rollout,
    parse_subject,
    rollout_json,
)
from app.rollout.flag_schemas import MAX_AUDIT_PAGE
from app.settings import Settings
from pool.store.keys import DEFAULT_PREFIX, Keys
from sql.database import open_pool
from sql.errors import DataError
from sql.flags import Actor, FlagChange, Scope

_PERCENTAGE = re.compile(r"[0-9]{1,3}(\.[0-9]{1,2})?")


def add_parser(sub: Any) -> None:
    """The `flags` command and its actions, on the CLI's subparsers (app/cli.py)."""
    flags = sub.add_parser("flags", help="the rollout flags: show, set, audit")
    # An operator command: beside a running `dev`, it uses that dev's stores (app/cli.py).
    flags.set_defaults(run=run_command, operator=True)
    actions = flags.add_subparsers(required=True, metavar="ACTION")
    show = actions.add_parser("show", help="the kill switch, the percentage, every override")
    show.add_argument("--json", action="store_true")
    show.set_defaults(flags_action="show")
    set_ = actions.add_parser("set", help="change flags (each change is audited)")
    set_.add_argument("--kill-switch", choices=("on", "off"))
    set_.add_argument("--percentage", help="0 to 100, at most two decimals")
    for scope in Scope:
        set_.add_argument(
            f"--{scope.value}",
            nargs=2,
            metavar=("NAME" if scope is Scope.PLAN else "ID", "BACKEND"),
            help="BACKEND: new, appetize or none (removes the override)",
        )
    set_.set_defaults(flags_action="set")
    audit = actions.add_parser("audit", help="who changed which flag, when, old and new value")
    audit.add_argument("--limit", type=int, default=50)
    audit.add_argument("--flag", help="only this flag (killSwitch, percentage, user:ID, ...)")
    audit.add_argument("--json", action="store_true")
    audit.set_defaults(flags_action="audit")


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    settings.require_service_config()
    try:
        steps = _plan(args)
        lines = asyncio.run(_run(settings, steps))
    except FlagAdminError as exc:
        print(f"preview-orchestrator: refused ({exc.code}): {exc.message}", file=sys.stderr)
        return 2
    except DataError as exc:
        print(f"preview-orchestrator: database error: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0


Step = Callable[[FlagAdmin], Awaitable[list[str]]]


def _plan(args: argparse.Namespace) -> list[Step]:
    """What the command will do, every argument checked before anything is written."""
    if args.flags_action == "show":
        return [lambda admin: _show(admin, args.json)]
    if args.flags_action == "audit":
        if not 1 <= args.limit <= MAX_AUDIT_PAGE:
            raise FlagAdminError("invalid_query", f"--limit: 1 to {MAX_AUDIT_PAGE}")
        return [lambda admin: _audit(admin, args.limit, args.flag, args.json)]
    actor = Actor(None, f"cli:{getpass.getuser()}@{socket.gethostname()}")
    steps: list[Step] = []
    raw: dict[str, Any] = {}
    if args.kill_switch is not None:
        raw["killSwitch"] = args.kill_switch == "on"
    if args.percentage is not None:
        if not _PERCENTAGE.fullmatch(args.percentage):
            raise FlagAdminError(
                "invalid_body", "--percentage: a number from 0 to 100, at most two decimals"
            )
        raw["percentage"] = float(args.percentage)
    if raw:
        rollout = parse_rollout(raw)
        steps.append(lambda admin: _changed(admin.set_rollout(actor, rollout)))
    for scope in Scope:
        pair = getattr(args, scope.value)
        if pair is not None:
            steps.append(_override_step(actor, scope, *pair))
    if not steps:
        raise FlagAdminError("nothing_to_change", "name at least one flag to set")
    return steps


def _override_step(actor: Actor, scope: Scope, subject_text: str, backend: str) -> Step:
    subject = parse_subject(scope, subject_text)
    choice: Choice | None = None if backend == "none" else parse_choice({"backend": backend})

    async def step(admin: FlagAdmin) -> list[str]:
        change = await admin.set_override(actor, scope, subject, choice)
        return [_describe(change)] if change else [f"{scope.value} {subject}: already {backend}"]

    return step


async def _changed(setting: Awaitable[tuple[Any, list[FlagChange]]]) -> list[str]:
    _, changes = await setting
    return [_describe(c) for c in changes] or ["kill switch and percentage: already so"]


def _describe(change: FlagChange) -> str:
    return f"{change.flag}: {json.dumps(change.old)} -> {json.dumps(change.new)} (#{change.id})"


async def _show(admin: FlagAdmin, as_json: bool) -> list[str]:
    stored = await admin.flags()
    if as_json:
        view = {
            "rollout": rollout_json(stored.rollout),
            "overrides": [override_json(o) for o in stored.overrides],
        }
        return [json.dumps(view, indent=2)]
    rollout = stored.rollout
    lines = [
        f"kill switch  {'ON (everyone on Appetize)' if rollout.kill_switch else 'off'}",
        f"percentage   {rollout.percentage} % of users on the new system",
    ]
    lines += [f"{o.scope.value:<8} {o.subject:<36}  {o.backend}" for o in stored.overrides]
    return lines if stored.overrides else [*lines, "no overrides"]


async def _audit(admin: FlagAdmin, limit: int, flag: str | None, as_json: bool) -> list[str]:
    changes = await admin.changes(limit=limit, flag=flag)
    if as_json:
        return [json.dumps([change_json(c) for c in changes], indent=2)]
    return [
        f"{c.at.isoformat(timespec='seconds')}  {c.actor}  {c.flag}: "
        f"{json.dumps(c.old)} -> {json.dumps(c.new)}"
        for c in changes
    ]


async def _run(settings: Settings, steps: list[Step]) -> list[str]:
    assert settings.database_url and settings.redis_url
    db: AsyncConnectionPool = await open_pool(settings.database_url, min_size=1, max_size=1)
    redis: Redis = Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        admin = FlagAdmin(db, redis, Keys(DEFAULT_PREFIX).flags_channel)
        lines: list[str] = []
        for step in steps:
            lines += await step(admin)
        return lines
    finally:
        await redis.aclose()
        await db.close()
