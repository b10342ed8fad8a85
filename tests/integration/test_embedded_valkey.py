"""`dev`'s embedded Valkey keeps what it acknowledged across a crash: an append-only file under
the data dir, fsynced every second (docs/architecture.md, "Durability and recovery")."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import redis

from app.embedded import embedded_valkey
from tests.redis_replies import sync_reply


def test_a_killed_valkey_comes_back_with_its_data(tmp_path: Path) -> None:
    with embedded_valkey(tmp_path) as url:
        client = redis.Redis.from_url(url)
        try:
            client.hset("po:snapmeta:s1", mapping={"epoch": "e1", "head": 7})
            pid = int(sync_reply(client.info("server"))["process_id"])
            time.sleep(1.5)  # everysec: what was acked a second ago is on disk
            os.kill(pid, signal.SIGKILL)
        finally:
            client.close()
    with embedded_valkey(tmp_path) as url:
        client = redis.Redis.from_url(url, decode_responses=True)
        try:
            assert client.hgetall("po:snapmeta:s1") == {"epoch": "e1", "head": "7"}
        finally:
            client.close()
