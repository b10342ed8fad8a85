"""`dev`: migrations, demo data, the web server and a worker in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import uvicorn

from app.cli_support import print_banner
from app.routes.dev import DEMO_EMAIL, DEMO_PROJECT_ID, DEMO_USER_ID
from app.server import create_app, websocket_options
from app.settings import Settings
from app.ui_assets import install_ui
from pool.logs import configure_logging
from sql import seed
from sql.database import open_pool
from sql.migrate import apply_migrations

log = logging.getLogger(__name__)


async def run_dev(settings: Settings, *, host: str, port: int) -> None:
    from app.cli import worker_config
    from workers.settings import build_worker

    assert settings.database_url
    configure_logging(settings.preview_log_level)
    # The demo editor's npm packages (CodeMirror, the QR renderer): once per lockfile.
    print("installing the editor's browser packages (first start only) ...", flush=True)
    await asyncio.to_thread(install_ui)
    await apply_migrations(settings.database_url)
    db = await open_pool(settings.database_url, min_size=1, max_size=1)
    async with db, db.connection() as conn:
        await seed.ensure_user(conn, DEMO_USER_ID, DEMO_EMAIL)
        await seed.ensure_project(conn, DEMO_PROJECT_ID, DEMO_USER_ID, "Demo project")

    worker = build_worker(worker_config(settings))
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            **websocket_options(settings),
        )
    )
    worker_task = asyncio.create_task(worker.async_run(), name="dev-worker")
    try:
        serving = asyncio.create_task(server.serve(), name="dev-web")
        while not server.started and not serving.done():
            await asyncio.sleep(0.05)
        if server.started:
            print_banner(settings, host, port)
        await serving
    finally:
        worker_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker_task
        await worker.close()
        await _destroy_local_machines(settings)


async def _destroy_local_machines(settings: Settings) -> None:
    """`dev` owns its machines: the embedded Valkey forgets the pool on restart, so machines
    left running would only become orphans for the next run's reconcile."""
    from app.cli import make_provider

    provider = make_provider(settings)
    try:
        machines = await provider.list()
        await asyncio.gather(*(provider.destroy(m.id) for m in machines))
        print(f"stopped {len(machines)} local preview machine(s)", flush=True)
    finally:
        await provider.aclose()
