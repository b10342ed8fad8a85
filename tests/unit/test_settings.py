from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PREVIEW_POOL_MIN": "many"}, "PREVIEW_POOL_MIN"),
        ({"PREVIEW_POOL_MIN": "-1"}, "PREVIEW_POOL_MIN"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL"),
        ({"PREVIEW_PROVIDER": "docker"}, "PREVIEW_PROVIDER"),
        ({"SUPABASE_URL": "ftp://x"}, "SUPABASE_URL"),
        ({"PREVIEW_TEMPLATES": "Bad Name"}, "PREVIEW_TEMPLATES"),
        ({"PREVIEW_POOL_MIN": "5", "PREVIEW_POOL_MAX": "2"}, "PREVIEW_POOL_MIN"),
    ],
)
def test_a_malformed_value_is_named(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError, match=f"^{named}: "):
        load_settings()


def test_web_requires_its_stores_and_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("DATABASE_URL", "REDIS_URL", "SUPABASE_JWT_SECRET", "SUPABASE_URL"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(SettingsError, match=r"^DATABASE_URL: not set"):
        load_settings().require_web_config()
    monkeypatch.setenv("DATABASE_URL", "postgresql://x/y")
    monkeypatch.setenv("REDIS_URL", "redis://x")
    with pytest.raises(SettingsError, match=r"^SUPABASE_JWT_SECRET: "):
        load_settings().require_web_config()


def test_the_cli_stops_with_one_line_naming_the_variable() -> None:
    env = {**os.environ, "PREVIEW_REAP_INTERVAL_SECONDS": "soon"}
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "PREVIEW_REAP_INTERVAL_SECONDS" in lines[0]


@pytest.mark.parametrize(
    ("overrides", "allow"),
    [
        ({"preview_public_url": "https://previews.example.com"}, "previews.example.com:443"),
        ({"preview_public_url": "http://localhost:8000"}, "localhost:8000"),
        (
            {"preview_sandbox_ws_url": "ws://preview-orchestrator.internal:8080/api/sandbox/ws"},
            "preview-orchestrator.internal:8080",
        ),
        ({"preview_sandbox_ws_url": "ws://[fdaa::3]:8080/api/sandbox/ws"}, "[fdaa::3]:8080"),
        ({"preview_egress_allow": " registry.npmjs.org:443 "}, "registry.npmjs.org:443"),
    ],
)
def test_a_fly_machine_is_told_where_the_orchestrator_is_and_may_reach_only_that(
    overrides: dict[str, str], allow: str
) -> None:
    settings = load_settings(**overrides)
    env = settings.machine_env
    assert env == {
        "PREVIEW_ORCHESTRATOR_URL": settings.sandbox_ws_url,
        "PREVIEW_EGRESS_ALLOW": allow,
    }


def test_a_registry_mirror_reaches_fly_machines_only_when_configured() -> None:
    assert "PREVIEW_NPM_REGISTRY" not in load_settings().machine_env
    mirror = "http://npm-mirror.internal:4873/"
    env = load_settings(preview_npm_registry=mirror).machine_env
    assert env["PREVIEW_NPM_REGISTRY"] == mirror
    with pytest.raises(SettingsError, match="PREVIEW_NPM_REGISTRY"):
        load_settings(preview_npm_registry="http://mirror.internal:4873/?x=1 ")


def test_the_fly_provider_passes_the_machine_env_and_no_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.wiring import make_provider
    from pool.providers.fly import FlyProvider

    secrets = {"fly_api_token": "fly-secret", "preview_token_secret": "token-secret"}
    settings = load_settings(
        preview_provider="fly",
        database_url="postgresql://x/y",
        redis_url="redis://x",
        fly_preview_app="preview-machines",
        preview_image="registry.fly.io/preview:1",
        preview_public_url="https://previews.example.com",
        **secrets,
    )
    provider = make_provider(settings)
    assert isinstance(provider, FlyProvider)
    env = provider.defaults.env
    assert env == settings.machine_env
    assert not any(secret in value for secret in secrets.values() for value in env.values())
