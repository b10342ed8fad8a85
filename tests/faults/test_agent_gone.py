"""The agent of a leased machine SIGKILLed and never restarted (its machine lost for good): the
editor hears `offline` at once, and the session fails with `machine_lost` within a reconcile
interval or two, which the editor hears as `ended`; its patches are no longer acked. A real
`dev` with its agents, reconcile every 2 s. (Locally the agent is the machine's process, so
reconcile sees the machine itself gone; a machine alive whose agent stays away is failed after
PREVIEW_AGENT_LOST_SECONDS: tests/integration/test_reconcile_heals.py.)"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.e2e.editor import Editor
from tests.e2e.stack import running_stack
from tests.redis_claim import redis_url

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

GRACE_SECONDS = 5
RECONCILE_SECONDS = 2


def test_a_lost_agent_is_told_to_the_editor_and_then_ends_the_session(tmp_path: Path) -> None:
    with running_stack(
        tmp_path,
        redis_url=redis_url("FAULTS_REDIS_URL", "faults"),
        pool_min=1,
        pool_max=2,
        extra_env={
            "PREVIEW_AGENT_LOST_SECONDS": str(GRACE_SECONDS),
            "PREVIEW_RECONCILE_INTERVAL_SECONDS": str(RECONCILE_SECONDS),
        },
    ) as stack:
        stack.wait_ready_machines(1)
        session = stack.lease()
        with Editor(session.editor_url(stack.base_url)) as editor:
            editor.hello()
            seq = editor.write("src/App.jsx", "export default () => null\n")
            editor.wait_applied(seq, timeout=30)
            mark = editor.mark()
            pid = int(stack.run_provider("get", session.machine_id)["pid"])
            os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()

            offline = editor.wait(
                "status", lambda f: f["state"] == "offline", after=mark, timeout=15
            )
            assert offline["detail"] == "the preview machine disconnected"
            ended = editor.wait("ended", after=mark, timeout=GRACE_SECONDS + 30)
            waited = time.monotonic() - killed
            assert (ended["reason"], ended["status"]) == ("machine_lost", "failed")
            assert waited < 3 * RECONCILE_SECONDS + 10
            assert editor.wait_closed() == 4000
        answer = stack.http.get(
            f"{stack.base_url}/api/preview/sessions/{session.id}", headers=stack.headers
        )
        assert answer.json()["status"] == "failed"
