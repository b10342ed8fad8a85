"""Reads both arms (sql/ab_arms.py) and builds the A/B report (app/rollout/ab_report.py): the
one I/O step between the tables and the pure report, shared by the admin route and the CLI."""

from __future__ import annotations

import asyncio
from datetime import datetime

from app.rollout.ab_report import Report, appetize_arm_sample, build_report, new_arm_sample
from sql import ab_arms
from sql.sessions import Connection


async def read_report(conn: Connection, since: datetime, until: datetime) -> Report:
    """The report on the sessions created since `since`. Each arm is read by one statement
    (one snapshot: a session with its events); a session created between the statements only
    joins the next report."""
    new_rows = await ab_arms.new_arm(conn, since)
    sessionless = await ab_arms.sessionless_fallbacks(conn, since)
    appetize_rows = await ab_arms.appetize_arm(conn, since)
    new = new_arm_sample(new_rows, sessionless)
    appetize = appetize_arm_sample(appetize_rows)
    # The bootstrap is CPU work (thousands of resamples per metric): off the event loop.
    return await asyncio.to_thread(build_report, new, appetize, since, until)
