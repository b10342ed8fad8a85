"""The stores around refusal tests: before/after pictures for asserting that a refused request
changed nothing (the Postgres rows that matter, every persistent Redis key byte for byte), and
settings over freshly emptied stores for module-scoped apps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import redis

from app.settings import Settings, load_settings
from tests.conftest import JWT_SECRET, REDIS_URL, TOKEN_SECRET
from tests.redis_claim import flush as flush_redis
from tests.redis_replies import sync_reply

READY_LIST = "po:ready:react-web:local"


def db_snapshot(database_url: str) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        return {
            "sessions": conn.execute(
                "SELECT id, user_id, project_id, status, container_id, lease_epoch, "
                "last_activity, ended_at, config FROM preview_sessions ORDER BY id"
            ).fetchall(),
            "leases": conn.execute(
                "SELECT id, machine_id, epoch, session_id, released_at FROM machine_leases "
                "ORDER BY id"
            ).fetchall(),
            "events": conn.execute("SELECT count(*), max(id) FROM session_events").fetchone(),
            "targets": conn.execute(
                "SELECT template, region, min_size, max_size, updated_at, updated_by "
                "FROM pool_targets ORDER BY 1, 2"
            ).fetchall(),
        }


def redis_snapshot() -> dict[bytes, bytes | None]:
    """Every key without a TTL, serialized. Keys with a TTL (rate-limit and demand counters)
    expire on their own between before and after, and every write path that sets them also
    writes persistent keys, so leaving them out hides no change."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return {
            key: sync_reply(client.dump(key))
            for key in sorted(client.scan_iter(count=1000))
            if client.pttl(key) == -1
        }
    finally:
        client.close()


def ready_machines() -> list[str]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        return sorted(sync_reply(client.lrange(READY_LIST, 0, -1)))
    finally:
        client.close()


def ready_count() -> int:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return int(sync_reply(client.llen(READY_LIST)))
    finally:
        client.close()


def machine_state(machine_id: str) -> str | None:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        return sync_reply(client.hget(f"po:m:{machine_id}", "state"))
    finally:
        client.close()


def emptied_stores_settings(database_url: str, data_dir: Path) -> Settings:
    """What the function-scoped `settings` fixture gives, for a module-scoped app: the same
    emptied tables, flushed Redis database and configuration."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE session_events, machine_leases, preview_sessions, user_quotas, "
            "pool_targets, project_members, projects, auth.users CASCADE"
        )
    flush_redis(REDIS_URL)
    return load_settings(
        database_url=database_url,
        redis_url=REDIS_URL,
        supabase_jwt_secret=JWT_SECRET,
        preview_token_secret=TOKEN_SECRET,
        preview_data_dir=data_dir,
        preview_public_url="http://localhost:8000",
    )
