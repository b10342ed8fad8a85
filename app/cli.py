"""The `preview-orchestrator` command: dev, web, worker, migrate, pool status, pool set.

Settings are read and validated here, once; a bad value stops start-up with one line naming
the variable (exit status 2).
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

from app.pool_admin import PoolAdminError
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
        return int(args.run(args, settings) or 0)
    except SettingsError as exc:
        print(f"preview-orchestrator: configuration error: {exc}", file=sys.stderr)
        return 2
    except PoolAdminError as exc:  # the admin API's 400, in a shell
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
    migrate.set_defaults(run=_run_migrate)

    pool = sub.add_parser("pool", help="inspect and size the warm pool")
    pool_sub = pool.add_subparsers(required=True, metavar="ACTION")
    status = pool_sub.add_parser("status", help="counts, bounds and hit ratio per pool")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=_run_pool_status)
    set_ = pool_sub.add_parser("set", help="set a pool's bounds per tier and its guest size")
    set_.add_argument("template")
    set_.add_argument("region")
    set_.add_argument("--min", type=int, required=True, dest="min_size", help="hot tier")
    set_.add_argument("--max", type=int, required=True, dest="max_size", help="hot tier")
    set_.add_argument("--suspended", type=int, nargs=2, metavar=("MIN", "MAX"))
    set_.add_argument("--stopped", type=int, nargs=2, metavar=("MIN", "MAX"))
    set_.add_argument(
        "--guest", type=int, nargs=2, metavar=("CPUS", "MEMORY_MB"), help="rolls through"
    )
    set_.set_defaults(run=_run_pool_set)
    return parser


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
            create_app(settings),
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


def _run_pool_status(args: argparse.Namespace, settings: Settings) -> int:
    from app.operator import pool_status

    settings.require_service_config()
    report = asyncio.run(pool_status(settings))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    columns = [
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
    ]
    print("  ".join(f"{c:>10}" for c in columns))
    for row in report:
        print("  ".join(f"{'-' if row[c] is None else row[c]!s:>10}" for c in columns))
    for row in report:
        if backoff := row.get("createBackoff"):
            print(
                f"{row['template']}:{row['region']}: creates failing "
                f"({backoff['failures']} runs in a row), next try in "
                f"{max(backoff['retryAt'] - time.time(), 0):.0f}s: {backoff['error']}"
            )
    return 0


def _run_pool_set(args: argparse.Namespace, settings: Settings) -> int:
    from app.operator import set_pool_bounds

    settings.require_service_config()
    message = asyncio.run(
        set_pool_bounds(
            settings,
            args.template,
            args.region,
            args.min_size,
            args.max_size,
            suspended=tuple(args.suspended) if args.suspended else None,
            stopped=tuple(args.stopped) if args.stopped else None,
            guest=tuple(args.guest) if args.guest else None,
        )
    )
    print(message)
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
        yield load_settings(**overrides)


def _dev_secret(path: Path) -> str:
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


if __name__ == "__main__":
    sys.exit(main())
