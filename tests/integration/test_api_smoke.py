from __future__ import annotations

from starlette.testclient import TestClient

from app.server import create_app
from app.settings import Settings
from tests.conftest import fill_pool, make_user


def test_lease_get_list_heartbeat_delete(settings: Settings) -> None:
    user = make_user(settings.database_url or "")
    machines = fill_pool(2)
    with TestClient(create_app(settings)) as client:
        created = client.post(
            "/api/preview/sessions", json={"projectId": str(user.project_id)}, headers=user.headers
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["status"] == "active" and body["machineId"] in machines
        sid = body["id"]
        assert client.get(f"/api/preview/sessions/{sid}", headers=user.headers).json()["id"] == sid
        listed = client.get(
            f"/api/preview/sessions?projectId={user.project_id}", headers=user.headers
        ).json()["sessions"]
        assert [s["id"] for s in listed] == [sid]
        assert (
            client.post(f"/api/preview/sessions/{sid}/heartbeat", headers=user.headers).status_code
            == 204
        )
        assert (
            client.delete(f"/api/preview/sessions/{sid}", headers=user.headers).status_code == 204
        )
        assert (
            client.get(f"/api/preview/sessions/{sid}", headers=user.headers).json()["status"]
            == "ended"
        )
