"""`preview-orchestrator appetize migrate | rollback`: every project's Appetize settings
(`appetize_previews`) converted into preview configuration (`project_preview_configs`), and back.

What to do with a project is decided by `plan_migration` / `plan_rollback` (pure) from what the
journal (`appetize_migration_journal`) and the two tables say; sql/appetize.py writes it, each
write checking in Postgres that the row is still what the decision was made from.

    idempotent   a migrated project whose Appetize settings are unchanged is skipped; a
                 second run changes nothing and reports 0 migrated
    resumable    projects are taken in id order, `--batch` of them per transaction, each
                 configuration committed with its journal row: a killed run loses at most its
                 open batch, which the next run does again
    reversible   rollback removes the configurations the migration wrote, unless someone
                 changed them since (those are reported and left alone); a project that had a
                 configuration of its own is never migrated, so nothing is overwritten
    dry run      reads without locking and prints what a run would do; writes nothing

The Appetize settings stay where they are: the Appetize fallback keeps using them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

import psycopg

from app.rollout.appetize_devices import Converted, Unmapped, convert
from app.settings import Settings, SettingsError
from sql import appetize
from sql.appetize import Candidate, Connection, Migrated
from sql.errors import DatabaseUnavailable, DataError

DEFAULT_BATCH = 50
MAX_BATCH = 1000


class MigrationRefused(RuntimeError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Outcome(Enum):
    MIGRATE = "migrate"  # no configuration yet: create it
    UPDATE = "update"  # migrated, its Appetize settings changed since: rewrite it
    ROLL_BACK = "roll_back"
    UNCHANGED = "unchanged"
    UNMAPPED = "unmapped"
    LEFT_ALONE = "left_alone"

    @property
    def changes(self) -> bool:
        return self in (Outcome.MIGRATE, Outcome.UPDATE, Outcome.ROLL_BACK)


@dataclass(frozen=True)
class Step:
    project_id: uuid.UUID
    outcome: Outcome
    reason: str = ""
    converted: Converted | None = None


def plan_migration(candidate: Candidate) -> Step:
    project = candidate.project_id
    if not candidate.project_exists:
        return Step(project, Outcome.UNMAPPED, "no such project")
    if candidate.migrated and candidate.source_unchanged:
        return Step(project, Outcome.UNCHANGED)
    converted = convert(candidate.platform, candidate.device, candidate.options)
    if isinstance(converted, Unmapped):
        return Step(project, Outcome.UNMAPPED, converted.reason)
    if not candidate.migrated:
        if candidate.has_config:
            return Step(project, Outcome.LEFT_ALONE, "it has a preview configuration of its own")
        return Step(project, Outcome.MIGRATE, converted=converted)
    if not candidate.has_config:
        return Step(project, Outcome.LEFT_ALONE, "its migrated configuration was removed since")
    if not candidate.config_unchanged:
        return Step(project, Outcome.LEFT_ALONE, "its migrated configuration was changed since")
    return Step(project, Outcome.UPDATE, "its Appetize settings changed", converted)


def plan_rollback(migrated: Migrated) -> Step:
    if migrated.has_config and not migrated.config_unchanged:
        return Step(migrated.project_id, Outcome.LEFT_ALONE, "its configuration was changed since")
    return Step(migrated.project_id, Outcome.ROLL_BACK)


@dataclass
class Report:
    dry_run: bool
    steps: list[Step] = field(default_factory=list)

    def count(self, *outcomes: Outcome) -> int:
        return sum(1 for step in self.steps if step.outcome in outcomes)

    @property
    def changed(self) -> int:
        return sum(1 for step in self.steps if step.outcome.changes)


Emit = Callable[[Step, bool], None]


def _quiet(step: Step, dry_run: bool) -> None:
    pass


async def migrate(
    conn: Connection,
    *,
    dry_run: bool = False,
    batch: int = DEFAULT_BATCH,
    emit: Emit = _quiet,
) -> Report:
    """Migrate every project with Appetize settings; `conn` in autocommit mode. Each batch is
    its own transaction, reported (`emit`) once committed."""
    await _prepare(conn, dry_run, batch)
    report = Report(dry_run)
    after: uuid.UUID | None = None
    while True:
        async with conn.transaction(force_rollback=dry_run):
            candidates = await appetize.read_candidates(conn, after, batch, lock=not dry_run)
            steps = [await _carry_out(conn, plan_migration(c), dry_run) for c in candidates]
        for step in steps:
            emit(step, dry_run)
        report.steps.extend(steps)
        if len(candidates) < batch:
            return report
        after = candidates[-1].project_id


async def rollback(
    conn: Connection,
    *,
    project_id: uuid.UUID | None = None,
    dry_run: bool = False,
    batch: int = DEFAULT_BATCH,
    emit: Emit = _quiet,
) -> Report:
    """Undo the migration of every migrated project, or of `project_id` only."""
    await _prepare(conn, dry_run, batch)
    if project_id is not None and await appetize.journal_state(conn, project_id) is None:
        raise MigrationRefused("not_migrated", f"project {project_id} was never migrated")
    report = Report(dry_run)
    after: uuid.UUID | None = None
    while True:
        async with conn.transaction(force_rollback=dry_run):
            found = await appetize.read_migrated(conn, after, batch, project_id)
            steps = [await _carry_out(conn, plan_rollback(m), dry_run) for m in found]
        for step in steps:
            emit(step, dry_run)
        report.steps.extend(steps)
        if len(found) < batch:
            return report
        after = found[-1].project_id


async def _prepare(conn: Connection, dry_run: bool, batch: int) -> None:
    if not 1 <= batch <= MAX_BATCH:
        raise MigrationRefused("bad_batch", f"--batch must be from 1 to {MAX_BATCH}")
    await appetize.prepare_session(conn)
    if not dry_run and not await appetize.try_migration_lock(conn):
        # Another run, or the server side of a killed one that has not noticed yet: wait for
        # it, then carry on (what it finished, this run finds done).
        print("waiting for another `appetize migrate` or `rollback` to finish", file=sys.stderr)
        await appetize.wait_migration_lock(conn)


async def _carry_out(conn: Connection, step: Step, dry_run: bool) -> Step:
    """Make the planned change (unless `dry_run`); a row that changed since it was read makes
    the project left alone instead."""
    if dry_run or not step.outcome.changes:
        return step
    if step.outcome is Outcome.ROLL_BACK:
        done = await appetize.remove_config(conn, step.project_id)
    else:
        assert step.converted is not None
        write = (
            appetize.create_config if step.outcome is Outcome.MIGRATE else appetize.replace_config
        )
        done = await write(conn, step.project_id, step.converted.device, step.converted.device_type)
    if done:
        return step
    return Step(step.project_id, Outcome.LEFT_ALONE, "its configuration changed during the run")


def describe(step: Step, dry_run: bool) -> str | None:
    """The report line of a step that changes something (None for the others: the summary
    counts them)."""
    if not step.outcome.changes:
        return None
    verb = {
        Outcome.MIGRATE: "migrate",
        Outcome.UPDATE: "update",
        Outcome.ROLL_BACK: "roll back",
    }[step.outcome]
    line = f"{'would ' + verb if dry_run else _past(verb)} {step.project_id}"
    if step.converted is not None:
        line += f": {step.converted.device_type} {step.converted.device or '(default device)'}"
    return line + (f" ({step.reason})" if step.reason else "")


def _past(verb: str) -> str:
    return {"migrate": "migrated", "update": "updated", "roll back": "rolled back"}[verb]


def summary(report: Report, action: str) -> list[str]:
    prefix = "dry run, nothing written: " if report.dry_run else ""
    lines = [
        f"{prefix}{len(report.steps)} project(s) read, {report.changed} {action}, "
        f"{report.count(Outcome.UNCHANGED)} unchanged, "
        f"{report.count(Outcome.UNMAPPED)} could not be mapped, "
        f"{report.count(Outcome.LEFT_ALONE)} left alone"
    ]
    for outcome, title in ((Outcome.UNMAPPED, "could not map"), (Outcome.LEFT_ALONE, "left alone")):
        steps = [s for s in report.steps if s.outcome is outcome]
        if steps:
            lines.append(f"{title}:")
            lines.extend(f"  {s.project_id}: {s.reason}" for s in steps)
    return lines


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    """The CLI's `appetize migrate` and `appetize rollback`."""
    if settings.database_url is None:
        raise SettingsError("DATABASE_URL: not set")
    try:
        project = _project_id(getattr(args, "project", None))
        report = asyncio.run(_run(settings.database_url, args, project))
    except MigrationRefused as exc:
        print(f"preview-orchestrator: refused ({exc.code}): {exc.message}", file=sys.stderr)
        return 2
    except DataError as exc:
        print(f"preview-orchestrator: database error: {exc}", file=sys.stderr)
        return 1
    for line in summary(report, "migrated" if args.appetize == "migrate" else "rolled back"):
        print(line)
    return 0


def _project_id(text: str | None) -> uuid.UUID | None:
    if text is None:
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        raise MigrationRefused("invalid_id", f"--project: not a project id: {text!r}") from None


def _print_step(step: Step, dry_run: bool) -> None:
    line = describe(step, dry_run)
    if line is not None:
        print(line, flush=True)


async def _run(dsn: str, args: argparse.Namespace, project: uuid.UUID | None) -> Report:
    try:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        async with conn:
            if args.appetize == "migrate":
                return await migrate(conn, dry_run=args.dry_run, batch=args.batch, emit=_print_step)
            return await rollback(
                conn, project_id=project, dry_run=args.dry_run, batch=args.batch, emit=_print_step
            )
    except psycopg.Error as exc:  # connecting, or a commit: the statements translate their own
        raise DatabaseUnavailable(f"Postgres: {exc}") from exc
