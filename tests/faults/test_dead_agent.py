"""A ready machine whose agent died is not leased: the lease's health check (lease.lua) skips a
machine whose agent was connected when it became ready and has no gateway socket now.

The whole stack as the README runs it (`dev`, the local provider running the real agent and
Vite); the agent process of the one warm machine is SIGKILLed, then a session is asked for.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import redis

from tests.e2e.stack import running_stack
from tests.redis_claim import redis_url
from tests.redis_replies import sync_reply

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

REDIS_URL = redis_url("FAULTS_REDIS_URL", "faults")


def _agent_pids(machine_id: str) -> list[int]:
    """The machine's agent: `python -m sandbox.agent ... --machine-id <id>`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        # Not the sandbox's wrappers (bwrap, setpriv), which carry the agent's command line.
        python = Path(argv[0].decode(errors="replace")).name.startswith("python")
        if python and b"sandbox.agent" in argv and machine_id.encode() in argv:
            found.append(int(entry.name))
    return found


def _subscribers(client: redis.Redis, channel: str) -> int:
    [(_, count)] = sync_reply(client.pubsub_numsub(channel))
    return int(count)


def test_a_ready_machine_whose_agent_died_is_not_leased(tmp_path: Path) -> None:
    with running_stack(
        tmp_path,
        redis_url=REDIS_URL,
        pool_min=1,
        pool_max=1,
        # No on-demand boot: an empty pool answers 503, so a lease can only be the dead machine.
        extra_env={"PREVIEW_ONDEMAND_MAX": "0"},
    ) as stack:
        client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
        try:
            [machine] = sync_reply(client.lrange("po:ready:react-web:local", 0, -1))
            channel = f"po:ch:machine:{machine}"
            assert client.hget(f"po:m:{machine}", "agent")  # seen connected when it became ready
            assert _subscribers(client, channel) == 1
            [agent] = _agent_pids(machine)

            os.kill(agent, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while _subscribers(client, channel):  # the gateway saw the agent's socket close
                assert time.monotonic() < deadline, "the agent's socket is still open"
                time.sleep(0.02)
            answer = stack.http.post(
                f"{stack.base_url}/api/preview/sessions",
                json={"projectId": stack.project_id},
                headers=stack.headers,
            )

            assert answer.status_code == 503, answer.text
            record = sync_reply(client.hgetall(f"po:m:{machine}"))
            assert record["state"] == "ready" and "session" not in record, record
            assert record["agent_lost_at"]  # noted: reconcile replaces it if the agent stays away
        finally:
            client.close()
