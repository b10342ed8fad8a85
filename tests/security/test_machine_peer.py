"""User code in a local machine reaches the orchestrator only through its supervisor's forward,
which connects from SANDBOX_PEER: from there only the sandbox socket answers. In `dev` the demo
token route (an admin token for the asking), the API and every editor socket share that port."""

from __future__ import annotations

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from app.settings import Settings
from pool.providers.local_supervisor import SANDBOX_PEER, _peer_address
from tests.integration.live import live_server


@pytest.fixture
def dev_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"preview_dev_mode": True})


def test_a_machine_reaches_nothing_but_its_socket(
    dev_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with live_server(dev_settings) as host:
        machine = httpx.Client(transport=httpx.HTTPTransport(local_address=SANDBOX_PEER))
        developer = httpx.Client()
        try:
            assert developer.get(f"http://{host}/healthz").status_code == 200
            assert developer.post(f"http://{host}/api/dev/token?admin=1").status_code == 200
            for method, path in [
                ("POST", "/api/dev/token?admin=1"),
                ("GET", "/api/admin/pool"),
                ("GET", "/healthz"),
                ("GET", "/"),
            ]:
                answer = machine.request(method, f"http://{host}{path}")
                assert answer.status_code == 403, (path, answer.text)
                assert answer.json()["error"] == "forbidden"
        finally:
            machine.close()
            developer.close()
        # An editor socket from a machine is refused before the handshake.
        with pytest.raises(InvalidStatus) as refused:
            connect(
                f"ws://{host}/api/preview/sessions/00000000-0000-4000-8000-000000000001/ws",
                source_address=(SANDBOX_PEER, 0),
            )
        assert refused.value.response.status_code == 403
        # Its own socket is not refused for where it comes from: the machine token decides
        # (none here, so it is refused for that).
        with pytest.raises(InvalidStatus):
            connect(f"ws://{host}/api/sandbox/ws", source_address=(SANDBOX_PEER, 0))
    refused_paths = [r.getMessage() for r in caplog.records if "preview machine" in r.getMessage()]
    assert len(refused_paths) == 5
    assert not [m for m in refused_paths if "/api/sandbox/ws" in m]


def test_the_supervisor_connects_from_the_sandbox_peer_on_loopback_only() -> None:
    assert _peer_address("127.0.0.1") == (SANDBOX_PEER, 0)
    assert _peer_address("::1") is None
    assert _peer_address("10.0.0.5") is None
    assert _peer_address("localhost") is None
