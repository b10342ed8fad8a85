"""The `preview-orchestrator` command: dev, web, worker, migrate, and the operator commands
(pool status|set|delete, sessions list|show|end).

Settings are read and validated here, once; a bad value stops start-up with one line naming
the variable (exit status 2). Operator commands refuse bad input the same way, saying what is wrong
(`refused (code): message`). Beside a running `dev`, with DATABASE_URL and REDIS_URL unset, they
use that `dev`'s stores (app.dev_beacon).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from app.operator_sessions import SessionAdminError
from app.pool_admin import PoolAdminError
from app.rollout import cli_flags, cli_report
from app.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from app.shutdown import ExitDeadline


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    # SIGTERM (`kill`, a process manager, Fly stopping a machine) stops a command the way
    # Ctrl-C does. uvicorn handles both while it serves, then re-raises the signal; with
    # SIGTERM's default action the process would die there, skipping every cleanup: `dev`
    # would leave its embedded Postgres, Valkey and local machines running. Raising SIGINT
    # instead takes Ctrl-C's path, where asyncio.run cancels the main task so its `finally`
    # blocks run before KeyboardInterrupt.
    signal.signal(signal.SIGTERM, _as_interrupt)
    try:
        settings = load_settings()
        if getattr(args, "operator", False):
            settings = _beside_dev(settings, needs_redis=args.run is not _run_migrate)
        return int(args.run(args, settings) or 0)
    except SettingsError as exc:
        print(f"preview-orchestrator: configuration error: {exc}", file=sys.stderr)
        return 2
    except (PoolAdminError, SessionAdminError) as exc:  # the admin API's 400/404, in a shell
        print(f"preview-orchestrator: refused ({exc.code}): {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _as_interrupt(signum: int, frame: object) -> None:
    signal.raise_signal(signal.SIGINT)


def _interrupt_with_deadline(deadline: ExitDeadline) -> None:
    """SIGTERM as in main, and the process ends at the latest `deadline.seconds` later
    (app/shutdown.py: the long-running commands' shutdown sequences)."""

    def on_sigterm(signum: int, frame: object) -> None:
        deadline.arm()
        signal.raise_signal(signal.SIGINT)

    signal.signal(signal.SIGTERM, on_sigterm)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="preview-orchestrator", description=__doc__)
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    dev = sub.add_parser("dev", help="everything in one process, embedded stores when unset")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--host", default="127.0.0.1")
    dev.set_defaults(run=_run_dev)

    web = sub.add_parser("web", help="the HTTP API (run several)")
    web.add_argument("--port", type=int, default=8000)
    web.add_argument("--host", default="0.0.0.0")
    web.set_defaults(run=_run_web)

    worker = sub.add_parser("worker", help="the arq worker (run several)")
    worker.add_argument("--burst", action="store_true", help="run queued jobs, then exit")
    worker.set_defaults(run=_run_worker)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(run=_run_migrate, operator=True)

    pool = sub.add_parser("pool", help="inspect and size the warm pool")
    pool_sub = pool.add_subparsers(required=True, metavar="ACTION")
    status = _operator_command(pool_sub, "status", "counts, bounds and hit ratio per pool")
    status.set_defaults(run=_run_pool_status)
    set_ = _operator_command(
        pool_sub, "set", "change a pool's bounds per tier or its guest size (the rest is kept)"
    )
    set_.add_argument("template")
    set_.add_argument("region")
    set_.add_argument("--min", type=int, dest="min_size", metavar="N", help="hot tier")
    set_.add_argument("--max", type=int, dest="max_size", metavar="N", help="hot tier")
    set_.add_argument("--suspended", type=int, nargs=2, metavar=("MIN", "MAX"), help="Fly only")
    set_.add_argument("--stopped", type=int, nargs=2, metavar=("MIN", "MAX"), help="Fly only")
    set_.add_argument(
        "--guest",
        type=int,
        nargs=2,
        metavar=("CPUS", "MEMORY_MB"),
        help="machine size (rolls through on Fly)",
    )
    set_.set_defaults(run=_run_pool_set)
    delete = _operator_command(pool_sub, "delete", "remove a pool: its bounds become 0, it drains")
    delete.add_argument("template")
    delete.add_argument("region")
    delete.set_defaults(run=_run_pool_delete)

    sessions = sub.add_parser("sessions", help="find, inspect and end preview sessions")
    sessions_sub = sessions.add_subparsers(required=True, metavar="ACTION")
    list_ = _operator_command(sessions_sub, "list", "sessions, newest first")
    list_.add_argument("--user", help="a user id or email")
    list_.add_argument("--project", help="a project id")
    list_.add_argument("--status", help="booting, active, ended or failed")
    list_.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    list_.set_defaults(run=_run_sessions_list)
    show = _operator_command(sessions_sub, "show", "one session and its events")
    show.add_argument("session_id", metavar="ID")
    show.set_defaults(run=_run_sessions_show)
    end = _operator_command(sessions_sub, "end", "end a session and release its machine")
    end.add_argument("session_id", metavar="ID")
    end.set_defaults(run=_run_sessions_end)

    appetize = sub.add_parser("appetize", help="move projects' preview settings off Appetize")
    appetize_sub = appetize.add_subparsers(required=True, metavar="ACTION")
    for action, text in (
        ("migrate", "Appetize settings into preview configuration"),
        ("rollback", "remove the preview configuration migrate wrote"),
    ):
        command = appetize_sub.add_parser(action, help=text)
        command.add_argument("--dry-run", action="store_true", help="print it, write nothing")
        command.add_argument("--batch", type=int, default=50, help="projects per transaction")
        if action == "rollback":
            command.add_argument("--project", help="only this project (default: all)")
        command.set_defaults(run=_run_appetize, appetize=action)
    cli_flags.add_parser(sub)  # flags show | set | audit
    cli_report.add_parser(sub)  # rollout report
    return parser


def _operator_command(
    actions: argparse._SubParsersAction[argparse.ArgumentParser], name: str, text: str
) -> argparse.ArgumentParser:
    command = actions.add_parser(name, help=text)
    command.add_argument("--json", action="store_true", help="print JSON instead of a table")
    command.set_defaults(operator=True)
    return command


def _beside_dev(settings: Settings, *, needs_redis: bool = True) -> Settings:
    """An operator command's settings: as given, or, with DATABASE_URL or REDIS_URL unset,
    with the stores (and pool configuration) of the `dev` running on PREVIEW_DATA_DIR.
    `migrate` needs only Postgres: DATABASE_URL alone is enough for it."""
    from app.dev_beacon import BEACON, find_running_dev

    if settings.database_url and (settings.redis_url or not needs_redis):
        return settings
    beacon = find_running_dev(settings.preview_data_dir)
    if beacon is None:
        unset = " and ".join(
            name
            for name, value in (
                ("DATABASE_URL", settings.database_url),
                ("REDIS_URL", settings.redis_url),
            )
            if not value
        )
        raise SettingsError(
            f"{unset}: not set, and no `dev` is running on {settings.preview_data_dir} "
            f"(no live {settings.preview_data_dir / BEACON}). Start `preview-orchestrator dev` "
            "in this directory, set PREVIEW_DATA_DIR to the data directory of the `dev` you "
            "run, or set DATABASE_URL and REDIS_URL to your stores"
        )
    print(
        f"using the stores of `dev` (pid {beacon.pid}, port {beacon.port})",
        file=sys.stderr,
    )
    return load_settings(**beacon.overrides(settings))


def _run_appetize(args: argparse.Namespace, settings: Settings) -> int:
    from app.rollout.appetize_migration import run_command

    return run_command(args, settings)


def _run_web(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    from app.server import create_app, proxy_options, websocket_options
    from app.shutdown import (
        WEB_DEADLINE_SECONDS,
        WEB_DRAIN_SECONDS,
        DeadlineServer,
        ExitDeadline,
    )
    from app.wiring import metrics_listen
    from pool.core.logs import configure_logging

    if settings.preview_dev_mode:
        # Dev mode mounts the demo login, which signs an (admin) access token for anyone who
        # asks: only `dev`, on a developer's machine, may run with it.
        raise SettingsError(
            "PREVIEW_DEV_MODE: set, but `web` is the production server and refuses dev mode "
            "(it signs access tokens for anyone); unset it, or run `preview-orchestrator dev`"
        )
    settings.require_web_config()
    configure_logging(settings.preview_log_level)
    deadline = ExitDeadline(WEB_DEADLINE_SECONDS, "web")
    _interrupt_with_deadline(deadline)
    server = DeadlineServer(
        uvicorn.Config(
            create_app(settings, metrics_listen=metrics_listen(settings)),
            **websocket_options(settings),
            **proxy_options(settings),
            host=args.host,
            port=args.port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=WEB_DRAIN_SECONDS,
        ),
        deadline,
    )
    # As uvicorn.run: a signal ends serving normally, and a server that never started (the
    # port taken, a failing lifespan) exits with uvicorn's start-up failure status.
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0 if server.started else STARTUP_FAILURE


def _run_worker(args: argparse.Namespace, settings: Settings) -> int:
    from app.shutdown import WORKER_DEADLINE_SECONDS, ExitDeadline
    from app.wiring import worker_config
    from pool.core.logs import configure_logging
    from workers.supervisor import run_worker

    settings.require_service_config()
    configure_logging(settings.preview_log_level)
    _interrupt_with_deadline(ExitDeadline(WORKER_DEADLINE_SECONDS, "worker"))
    # Supervised: a store outage stops arq's Worker, never the process (workers.supervisor).
    # SIGTERM and Ctrl-C cancel it like any asyncio.run (see main).
    asyncio.run(run_worker(worker_config(settings), burst=args.burst))
    return 0


def _run_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from sql.migrate import apply_migrations

    if settings.database_url is None:
        raise SettingsError("DATABASE_URL: not set")
    applied = asyncio.run(apply_migrations(settings.database_url))
    for migration in applied:
        print(f"applied {migration.version:04d}_{migration.name}")
    print("database is up to date" if not applied else f"{len(applied)} migration(s) applied")
    return 0


POOL_COLUMNS = (
    "template",
    "region",
    "min",
    "max",
    "ready",
    "suspended",
    "stopped",
    "booting",
    "pending",
    "leased",
    "recycling",
    "hitRatio",
)
SESSION_COLUMNS = ("sessionId", "status", "template", "region", "createdAt", "userId", "projectId")


def _run_pool_status(args: argparse.Namespace, settings: Settings) -> int:
    from app.cli_tables import render_table
    from app.operator import pool_status

    settings.require_service_config()
    report = asyncio.run(pool_status(settings))
    if args.json:
        return _print_json(report)
    print(render_table(report, POOL_COLUMNS))
    for row in report:
        if backoff := row.get("createBackoff"):
            print(
                f"{row['template']}/{row['region']}: creates failing "
                f"({backoff['failures']} runs in a row), next try in "
                f"{max(backoff['retryAt'] - time.time(), 0):.0f}s: {backoff['error']}"
            )
    return 0


def _run_pool_set(args: argparse.Namespace, settings: Settings) -> int:
    from app.operator import describe_bounds, set_pool_bounds

    settings.require_service_config()
    # What was given, in the admin API's body shape; the rest keeps its stored value.
    change: dict[str, object] = {}
    if args.min_size is not None:
        change["min"] = args.min_size
    if args.max_size is not None:
        change["max"] = args.max_size
    for tier in ("suspended", "stopped"):
        if (pair := getattr(args, tier)) is not None:
            change[tier] = {"min": pair[0], "max": pair[1]}
    if args.guest is not None:
        change["guest"] = {"cpus": args.guest[0], "memoryMb": args.guest[1]}
    answer = asyncio.run(set_pool_bounds(settings, args.template, args.region, change))
    if args.json:
        return _print_json(answer)
    print(describe_bounds(answer))
    return 0


def _run_pool_delete(args: argparse.Namespace, settings: Settings) -> int:
    from app.operator import delete_pool

    settings.require_service_config()
    answer = asyncio.run(delete_pool(settings, args.template, args.region))
    if args.json:
        return _print_json(answer)
    print(
        f"{args.template}/{args.region}: removed; every bound is 0, so its ready machines go "
        "at the next resize and its leased ones as their sessions end"
    )
    return 0


def _run_sessions_list(args: argparse.Namespace, settings: Settings) -> int:
    from app.cli_tables import render_table
    from app.operator_sessions import list_sessions

    settings.require_service_config()
    rows = asyncio.run(
        list_sessions(
            settings, user=args.user, project=args.project, status=args.status, limit=args.limit
        )
    )
    if args.json:
        return _print_json({"sessions": rows})
    print(render_table(rows, SESSION_COLUMNS))
    return 0


def _run_sessions_show(args: argparse.Namespace, settings: Settings) -> int:
    from app.cli_tables import cell, render_table
    from app.operator_sessions import show_session

    settings.require_service_config()
    session = asyncio.run(show_session(settings, args.session_id))
    if args.json:
        return _print_json(session)
    fields = {k: v for k, v in session.items() if k != "events"}
    width = max(len(k) for k in fields)
    for name, value in fields.items():
        print(f"{name:<{width}}  {cell(value)}")
    print()
    events = [
        {**event, "detail": json.dumps(event["detail"]) if event["detail"] else None}
        for event in session["events"]
    ]
    print(render_table(events, ("sinceRequestedMs", "kind", "at", "detail")))
    return 0


def _run_sessions_end(args: argparse.Namespace, settings: Settings) -> int:
    from app.operator_sessions import end_session

    settings.require_service_config()
    answer = asyncio.run(end_session(settings, args.session_id))
    if args.json:
        return _print_json(answer)
    if answer["ended"]:
        print(f"session {answer['sessionId']} ended; its machine is released")
    else:
        print(
            f"session {answer['sessionId']} had already ended "
            f"({answer['status']}: {answer['endReason']}); nothing changed"
        )
    return 0


def _print_json(value: object) -> int:
    print(json.dumps(value, indent=2))
    return 0


def _run_dev(args: argparse.Namespace, settings: Settings) -> int:
    from app.devserver import run_dev
    from app.shutdown import DEV_DEADLINE_SECONDS, ExitDeadline

    deadline = ExitDeadline(DEV_DEADLINE_SECONDS, "dev")
    _interrupt_with_deadline(deadline)
    with _dev_stores(settings, args.port) as dev_settings:
        asyncio.run(run_dev(dev_settings, host=args.host, port=args.port, deadline=deadline))
    return 0


@contextlib.contextmanager
def _dev_stores(settings: Settings, port: int) -> Iterator[Settings]:
    """Fill in what `dev` may provide itself: embedded stores, secrets, dev mode."""
    from app.dev_beacon import announced
    from app.embedded import embedded_postgres, embedded_valkey

    data_dir = settings.preview_data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    overrides: dict[str, object] = {"preview_dev_mode": True}
    if settings.preview_public_url == Settings.model_fields["preview_public_url"].default:
        overrides["preview_public_url"] = f"http://localhost:{port}"
    if settings.preview_sandbox_ws_url is None:
        # Local machines connect back over loopback, whatever the public URL says.
        overrides["preview_sandbox_ws_url"] = f"ws://127.0.0.1:{port}/api/sandbox/ws"
    for name in ("supabase_jwt_secret", "preview_token_secret"):
        if getattr(settings, name) is None:
            overrides[name] = _dev_secret(data_dir / f"{name}.txt")
    with contextlib.ExitStack() as stack:
        if settings.database_url is None:
            print("starting embedded Postgres ...", flush=True)
            overrides["database_url"] = stack.enter_context(embedded_postgres(data_dir))
        if settings.redis_url is None:
            print("starting embedded Valkey ...", flush=True)
            overrides["redis_url"] = stack.enter_context(embedded_valkey(data_dir))
        dev_settings = load_settings(**overrides)
        # Operator commands in a second terminal find these stores through it.
        stack.enter_context(announced(dev_settings, port))
        yield dev_settings


def _dev_secret(path: Path) -> str:
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


if __name__ == "__main__":
    sys.exit(main())
