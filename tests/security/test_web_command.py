"""Findings on `preview-orchestrator web`, the production entry point (issue 9, items 10, 11
and 13): it must refuse dev mode (whose demo login signs admin tokens for anyone), trust proxy
headers only from the proxies it is told about, and keep session tokens out of uvicorn's own
log lines.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from app.server import proxy_options
from app.settings import Settings, SettingsError, load_settings
from tests.conftest import JWT_SECRET, REDIS_URL, TOKEN_SECRET, free_port
from tests.integration.helpers import CLI, REPO_ROOT, stop_process, web_processes
from tests.security.machine import lease, recording_machine


@pytest.mark.slow
def test_web_refuses_to_start_in_dev_mode(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": REDIS_URL,
        "SUPABASE_JWT_SECRET": JWT_SECRET,
        "PREVIEW_TOKEN_SECRET": TOKEN_SECRET,
        "PREVIEW_DATA_DIR": str(tmp_path),
        "PREVIEW_DEV_MODE": "1",
    }
    process = subprocess.Popen(
        [str(CLI), "web", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while process.poll() is None and time.monotonic() < deadline:
            try:
                login = httpx.post(f"http://127.0.0.1:{port}/api/dev/token?admin=1", timeout=1)
            except httpx.HTTPError:
                time.sleep(0.2)
                continue
            pytest.fail(f"`web` serves the dev login in dev mode: {login.status_code}")
        assert process.poll() is not None, "`web` kept running in dev mode"
        _, stderr = process.communicate(timeout=10)
    finally:
        stop_process(process)
    assert process.returncode == 2
    (line,) = stderr.decode().strip().splitlines()
    assert "PREVIEW_DEV_MODE" in line and "preview-orchestrator dev" in line


@pytest.mark.parametrize(
    ("value", "trusted"),
    [("", []), (" 10.0.0.1 , fdaa::/16", ["10.0.0.1", "fdaa::/16"]), ("*", ["*"])],
)
def test_web_trusts_proxy_headers_only_from_the_configured_proxies(
    value: str, trusted: list[str]
) -> None:
    # uvicorn's own default would trust 127.0.0.1 (or FORWARDED_ALLOW_IPS) unasked.
    options = proxy_options(load_settings(preview_trusted_proxies=value))
    assert options == {"proxy_headers": bool(trusted), "forwarded_allow_ips": trusted}


@pytest.mark.parametrize("value", ["fly-proxy", "10.0.0.1/8", "*,10.0.0.1", "10.0.0.300"])
def test_a_malformed_trusted_proxy_is_named(value: str) -> None:
    with pytest.raises(SettingsError, match=r"^PREVIEW_TRUSTED_PROXIES: "):
        load_settings(preview_trusted_proxies=value)


@pytest.mark.slow
def test_uvicorns_own_lines_for_token_urls_are_redacted(settings: Settings, tmp_path: Path) -> None:
    # uvicorn logs every WebSocket handshake with its path and query ("WebSocket /…?token=…"
    # [accepted] / 403) through its error logger, which `web` does not silence.
    env = {"PREVIEW_LOG_LEVEL": "info"}
    with (
        recording_machine(),
        web_processes(settings.database_url or "", tmp_path, 1, extra_env=env) as (url,),
    ):
        session = lease(url, settings.database_url or "")
        socket_url = url.replace("http", "ws") + f"/api/preview/sessions/{session['id']}/ws"
        with connect(f"{socket_url}?token={session['token']}", open_timeout=10):
            pass
        forged = session["token"][::-1]
        with pytest.raises(InvalidStatus):
            connect(f"{socket_url}?token={forged}", open_timeout=10).close()
        preview = httpx.get(
            f"{url}/?token={session['token']}",
            headers={"host": session["previewUrl"].split("/")[2]},
            timeout=10,
        )
        assert preview.status_code == 302
    log = (tmp_path / "web0.log").read_text(errors="replace")
    assert session["token"] not in log and forged not in log
    messages = [json.loads(line)["message"] for line in log.splitlines() if line.startswith("{")]
    path = f"/api/preview/sessions/{session['id']}/ws?[redacted]"
    assert any(m.endswith(f'"WebSocket {path}" [accepted]') for m in messages), messages
    assert any(m.endswith(f'"WebSocket {path}" 403') for m in messages), messages
