"""The metrics a lease and an edit emit, as a statsd server and a Prometheus scraper see them:
a real UDP socket receives the statsd datagrams, and the running web process's GET /metrics
(its own port) serves the same figures."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from app.settings import Settings, load_settings
from pool.services.metrics_endpoint import Listen
from tests.conftest import fill_pool, free_port, make_user
from tests.integration.live import live_server
from tests.integration.test_gateway import Server, _set_tokens, receive_until, send
from tests.prom_text import parse, sample

PREFIX = "preview"


@pytest.fixture
def statsd_listener() -> Iterator[socket.socket]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(0.2)
    try:
        yield listener
    finally:
        listener.close()


def _datagrams(
    listener: socket.socket, until: set[str], seconds: float = 10
) -> dict[str, list[str]]:
    """Every statsd line received (name -> [value|type, ...]) until each of `until` came."""
    seen: dict[str, list[str]] = {}
    deadline = time.monotonic() + seconds
    while not until <= seen.keys() and time.monotonic() < deadline:
        try:
            data = listener.recv(65536)
        except TimeoutError:
            continue
        for line in data.decode().splitlines():
            name, _, value = line.partition(":")
            seen.setdefault(name, []).append(value)
    missing = until - seen.keys()
    assert not missing, f"no datagram for {sorted(missing)}; got {sorted(seen)}"
    return seen


def _ms(values: list[str]) -> float:
    (value,) = values
    number, kind = value.split("|")
    assert kind == "ms"
    return float(number)


def test_a_lease_and_an_edit_reach_statsd_and_the_metrics_endpoint(
    settings: Settings, statsd_listener: socket.socket
) -> None:
    statsd_port = statsd_listener.getsockname()[1]
    settings = load_settings(
        **{
            **settings.model_dump(),
            "preview_statsd_host": "127.0.0.1",
            "preview_statsd_port": statsd_port,
            "preview_statsd_prefix": PREFIX,
        }
    )
    machines = fill_pool(1)
    _set_tokens(machines)
    user = make_user(settings.database_url or "")
    metrics_port = free_port()
    with live_server(settings, metrics_listen=Listen("127.0.0.1", metrics_port)) as host:
        created = httpx.post(
            f"http://{host}/api/preview/sessions",
            json={"projectId": str(user.project_id)},
            headers=user.headers,
        )
        assert created.status_code == 201, created.text
        session, server = created.json(), Server(host)
        with server.agent(machines[0]) as agent:
            send(agent, "hello", machineId=machines[0], session=None, appliedSeq=0)
            assert receive_until(agent, "assign")["session"] == session["id"]
            with server.editor(session) as editor:
                send(editor, "hello", lastSeq=0)
                receive_until(editor, "welcome")
                send(editor, "patch", seq=1, changes=[{"path": "src/App.jsx", "content": "v1"}])
                assert receive_until(editor, "ack")["seq"] == 1
                assert receive_until(agent, "patch")["seq"] == 1
                send(agent, "applied", seq=1)
                assert receive_until(editor, "applied")["seq"] == 1
                editor.send("not json")  # refused: malformed, the socket stays open
                assert receive_until(editor, "error")["code"]

                stats = _datagrams(
                    statsd_listener,
                    {
                        f"{PREFIX}.lease.hit",
                        f"{PREFIX}.lease.duration",
                        f"{PREFIX}.edit.ack",
                        f"{PREFIX}.edit.applied",
                        f"{PREFIX}.gateway.sockets.editor",
                        f"{PREFIX}.gateway.sockets.sandbox",
                    },
                )
                scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
        # Not on the public port.
        assert httpx.get(f"http://{host}/metrics").status_code == 404

    assert stats[f"{PREFIX}.lease.hit"] == ["1|c"]
    assert stats[f"{PREFIX}.gateway.sockets.editor"] == ["1|g"]
    lease_ms = _ms(stats[f"{PREFIX}.lease.duration"])
    ack_ms = _ms(stats[f"{PREFIX}.edit.ack"])
    applied_ms = _ms(stats[f"{PREFIX}.edit.applied"])
    assert 0 < ack_ms <= applied_ms < 10_000  # the applied report came after the ack's patch

    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain; version=0.0.4")
    types, samples = parse(scraped.text)
    where = {"template": "react-web", "region": "local"}
    assert sample(samples, "preview_lease_total", **where, outcome="hit") == 1
    assert sample(samples, "preview_lease_total", **where, outcome="miss") is None
    assert types["preview_lease_duration_seconds"] == "histogram"
    assert sample(samples, "preview_lease_duration_seconds_count", **where) == 1
    # The same measurement: statsd's milliseconds (6 decimals) are Prometheus's seconds.
    assert sample(samples, "preview_lease_duration_seconds_sum", **where) == pytest.approx(
        lease_ms / 1000, abs=1e-6
    )
    assert sample(samples, "preview_edit_ack_seconds_count") == 1
    assert sample(samples, "preview_edit_ack_seconds_sum") == pytest.approx(ack_ms / 1000, abs=1e-6)
    assert sample(samples, "preview_edit_applied_seconds_count") == 1
    assert sample(samples, "preview_edit_applied_seconds_sum") == pytest.approx(
        applied_ms / 1000, abs=1e-6
    )
    # While both sockets were open; every frame the editor sent counted, the bad one refused.
    assert sample(samples, "preview_sockets_open", kind="editor") == 1
    assert sample(samples, "preview_sockets_open", kind="sandbox") == 1
    assert sample(samples, "preview_frames_total", kind="editor") == 3
    assert sample(samples, "preview_frames_total", kind="sandbox") == 2
    assert sample(samples, "preview_frames_refused_total", kind="editor", reason="malformed") == 1
    # Checked before the scrape was answered.
    assert sample(samples, "preview_store_up", store="redis") == 1
    assert sample(samples, "preview_store_up", store="postgres") == 1
