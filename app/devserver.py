"""`dev`: migrations, demo data, the web server and a worker in one process.

The worker runs as a task under workers.supervisor: a store outage (or any error) stops arq's
Worker, and the supervisor logs why and starts a new one with backoff. Shutdown always ends with
destroying the local machines, whatever became of the worker task.
"""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from app.cli_support import print_banner
from app.dev_progress import watch_pool_fill
from app.routes.dev import DEMO_EMAIL, DEMO_PROJECT_ID, DEMO_USER_ID
from app.server import create_app, websocket_options
from app.settings import Settings
from app.shutdown import (
    DEV_DRAIN_SECONDS,
    DEV_MACHINES_STOP_SECONDS,
    DEV_WORKER_STOP_SECONDS,
    DeadlineServer,
    ExitDeadline,
)
from app.ui_assets import install_ui
from app.wiring import make_provider, process_metrics, worker_config
from pool.core.logs import configure_logging
from pool.services.metrics_endpoint import Listen
from sql import seed
from sql.database import open_pool
from sql.migrate import apply_migrations

log = logging.getLogger(__name__)


async def run_dev(settings: Settings, *, host: str, port: int, deadline: ExitDeadline) -> None:
    from workers.supervisor import run_worker

    assert settings.database_url
    # Lines for the person at the terminal; `web` and `worker` keep JSON.
    configure_logging(settings.preview_log_level, human=True)
    # The machines go whenever `dev` stops once its stores are up, also during its start: this
    # data directory may hold machines a `dev` killed outright left running, and a Ctrl-C while
    # the editor's packages install must not keep them alive.
    try:
        await _prepare(settings)
        # One registry for the web server and the worker, served once (by the web server).
        metrics = process_metrics(settings)
        server = DeadlineServer(
            uvicorn.Config(
                create_app(settings, metrics=metrics, metrics_listen=dev_metrics_listen(settings)),
                host=host,
                port=port,
                log_config=None,
                access_log=False,
                timeout_graceful_shutdown=DEV_DRAIN_SECONDS,
                **websocket_options(settings),
            ),
            deadline,
        )
        worker_task = asyncio.create_task(
            run_worker(worker_config(settings, metrics)), name="dev-worker"
        )
        progress = asyncio.create_task(watch_pool_fill(settings), name="dev-pool-fill")
        try:
            serving = asyncio.create_task(server.serve(), name="dev-web")
            while not server.started and not serving.done():
                await asyncio.sleep(0.05)
            if server.started:
                print_banner(settings, host, port)
            await serving
        finally:
            progress.cancel()
            await asyncio.gather(progress, return_exceptions=True)
            await _stop_worker(worker_task)
    finally:
        await _destroy_local_machines(settings)


def dev_metrics_listen(settings: Settings) -> Listen | None:
    """`dev` serves /metrics on loopback: on PREVIEW_METRICS_PORT when it is set (0: off),
    else on a free port (a second `dev`, or a `web`, may hold 9091); the log says which."""
    if "preview_metrics_port" in settings.model_fields_set:
        port = settings.preview_metrics_port
        return Listen("127.0.0.1", port) if port else None
    return Listen("127.0.0.1", 0)


async def _prepare(settings: Settings) -> None:
    """The demo editor's npm packages (CodeMirror, the QR renderer: once per lockfile), the
    schema, and the demo user and project."""
    assert settings.database_url
    print("installing the editor's browser packages (first start only) ...", flush=True)
    await asyncio.to_thread(install_ui)
    await apply_migrations(settings.database_url)
    db = await open_pool(settings.database_url, min_size=1, max_size=1)
    async with db, db.connection() as conn:
        await seed.ensure_user(conn, DEMO_USER_ID, DEMO_EMAIL)
        await seed.ensure_project(conn, DEMO_PROJECT_ID, DEMO_USER_ID, "Demo project")


async def _stop_worker(worker_task: asyncio.Task[None]) -> None:
    """Cancel the supervised worker and wait for it, for DEV_WORKER_STOP_SECONDS at most: a
    worker that does not stop in time is left behind (asyncio.run cancels it again at exit).
    It only ends early on a bug in the supervisor itself: that is logged, and shutdown goes
    on."""
    worker_task.cancel()
    done, _ = await asyncio.wait({worker_task}, timeout=DEV_WORKER_STOP_SECONDS)
    if not done:
        log.error("the worker did not stop within %.0f s; going on", DEV_WORKER_STOP_SECONDS)
    elif not worker_task.cancelled() and (error := worker_task.exception()) is not None:
        log.error("the worker task had stopped on an error", exc_info=error)


async def _destroy_local_machines(settings: Settings) -> None:
    """`dev` owns its machines: the embedded Valkey forgets the pool on restart, so machines
    left running would only become orphans for the next run's reconcile."""
    provider = make_provider(settings)
    try:
        # Bounded: a machine that cannot be stopped in time (a hung process is SIGKILLed after
        # 2 s; its lock held by a hung holder is not) must not keep `dev` from exiting.
        async with asyncio.timeout(DEV_MACHINES_STOP_SECONDS):
            machines = await provider.list()
            outcomes = await asyncio.gather(
                *(provider.destroy(m.id) for m in machines), return_exceptions=True
            )
    except TimeoutError:
        log.error(
            "stopping the local machines took over %.0f s; gave up", DEV_MACHINES_STOP_SECONDS
        )
        return
    finally:
        await provider.aclose()
    failed = 0
    for machine, outcome in zip(machines, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            failed += 1
            log.error("could not stop local machine %s: %s", machine.id, outcome)
    print(f"stopped {len(machines) - failed} local preview machine(s)", flush=True)
