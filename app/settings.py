"""Configuration from the environment, validated once in the entry point.

pydantic-settings reads the variables; `load_settings` turns a validation failure into one line
naming the variable, which the CLI prints before exiting with status 2.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    database_url: str | None = None
    redis_url: str | None = None
    supabase_jwt_secret: SecretStr | None = None
    supabase_url: str | None = None

    preview_provider: Literal["local", "fly"] = "local"
    # Where browsers reach this service; previewUrl and wsUrl are built from it.
    preview_public_url: str = "http://localhost:8000"
    # Secret for session tokens (WebSocket and preview access). Required outside `dev`.
    preview_token_secret: SecretStr | None = None
    preview_templates: str = "react-web,react-native-web"
    preview_default_template: str = "react-web"
    preview_default_region: str = "local"
    preview_data_dir: Path = Path(".preview")
    preview_pool_min: int = Field(default=2, ge=0, le=1000)
    preview_pool_max: int = Field(default=10, ge=0, le=1000)
    preview_pool_headroom: float = Field(default=0.5, ge=0, le=10)
    preview_refill_seconds: float = Field(default=5.0, gt=0, le=600)
    preview_pending_ttl_seconds: float = Field(default=10.0, gt=0, le=300)
    preview_ondemand_max: int = Field(default=4, ge=0, le=1000)
    preview_reap_interval_seconds: int = Field(default=5, ge=1, le=3600)
    # The longest a worker job may run. It bounds how long a killed worker's job waits to run
    # again (this + 10 s) and how long a machine may stay booting, recycling or moving before
    # reconcile (every PREVIEW_RECONCILE_INTERVAL_SECONDS) replaces it.
    preview_job_timeout_seconds: int = Field(default=180, ge=10, le=3600)
    preview_reconcile_interval_seconds: int = Field(default=30, ge=1, le=60)
    # A hot or leased machine whose agent has been away this long is replaced (a leased one's
    # session fails: machine_lost). Agents reconnect within seconds when a web process restarts.
    preview_agent_lost_seconds: float = Field(default=60.0, ge=5, le=3600)
    # Creates for a pool that keep failing (a broken template) wait this long after the first
    # failed run, twice as long after each further one, up to the maximum.
    preview_create_backoff_seconds: float = Field(default=5.0, gt=0, le=3600)
    preview_create_backoff_max_seconds: float = Field(default=300.0, gt=0, le=86400)
    preview_max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=10 * 1024 * 1024)
    # The local preview proxy streams request bodies to the machine; larger ones get 413.
    preview_proxy_max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=2**30)
    # Peers whose X-Forwarded-For/Proto uvicorn honours (addresses or networks, comma-separated,
    # or `*`); empty: none, the connection's own address and scheme are the request's.
    preview_trusted_proxies: str = ""
    # Session tokens (editor socket, preview origin). Short lifetimes are for tests: the editor
    # refreshes its token (POST /api/preview/sessions/{id}/token) well before it expires.
    preview_session_token_ttl_seconds: int = Field(default=3600, ge=10, le=86400)
    # Links to open a preview on another device (QR code, new tab): preview access only.
    preview_share_ttl_seconds: int = Field(default=300, ge=10, le=3600)
    # A phone's device host (docs/templates.md, "Expo Go and Appetize"): how long the host a
    # share link is exchanged for keeps working (never past the session's end).
    preview_device_host_ttl_seconds: int = Field(default=12 * 3600, ge=60, le=7 * 86400)
    # Editors hear `idleWarning` this long before an idle end (at most half the idle timeout).
    preview_idle_warning_seconds: int = Field(default=60, ge=1, le=3600)
    # An editor socket's frames restart the session's idle clock; Postgres hears of it at most
    # this often per socket.
    preview_activity_flush_seconds: float = Field(default=5.0, gt=0, le=300)
    preview_db_pool_size: int = Field(default=10, ge=1, le=200)
    # How long a request (or a worker job) waits for a Postgres connection before it fails with
    # 503 + Retry-After: during an outage, answers come within this bound instead of hanging.
    preview_db_acquire_timeout_seconds: float = Field(default=3.0, gt=0, le=60)
    preview_statsd_host: str | None = None
    preview_statsd_port: int = Field(default=8125, ge=1, le=65535)
    preview_statsd_prefix: str = "preview"
    # `web` and `worker` serve GET /metrics (Prometheus text) on this port of their own, never
    # the public one; fly.toml's [metrics] scrapes it. 0: off. `dev` serves it on a free
    # loopback port unless this is set.
    preview_metrics_port: int = Field(default=9091, ge=0, le=65535)
    # The in-process alert evaluator posts alerts that fire and resolve here (a Slack incoming
    # webhook, or anything taking {"text": ...}); unset: alerts are only kept for
    # GET /api/admin/alerts (docs/operations.md, "Alerts").
    preview_alert_webhook_url: str | None = None
    preview_log_level: Literal["debug", "info", "warning", "error"] = "info"
    # permessage-deflate on the gateway's sockets. Off: editor and agent frames are a few hundred
    # bytes, where compressing and inflating each frame costs more CPU than the bytes it saves.
    preview_ws_deflate: bool = False
    # A socket whose pong has not been read this long after a ping is closed (1011). Generous:
    # under a burst the server may read a socket late, and closing it only adds a reconnect.
    preview_ws_ping_timeout_seconds: float = Field(default=60.0, gt=0, le=600)
    # What a session's edits may hold in Redis: the stream is trimmed to these bytes (oldest
    # first; the snapshot has its own cap of 8 MiB and 2,000 files), and all of one user's live
    # sessions together may hold at most the budget (patches beyond it: `over_budget`).
    preview_edit_stream_bytes: int = Field(default=16 * 1024 * 1024, ge=1024 * 1024, le=1 << 30)
    preview_edit_user_budget_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024 * 1024, le=1 << 34
    )
    # Reopening a project (docs/architecture.md): how long after a session ends its files are
    # kept for the project's next session (`"restore": true`), and how long a session started
    # from them waits for its machine to apply them before it is reported ready regardless.
    preview_snapshot_retention_hours: float = Field(default=168.0, gt=0, le=24 * 366)
    preview_restore_timeout_seconds: float = Field(default=15.0, gt=0, le=120)
    # Rollout flags (docs/rollout.md): the longest a web process answers from flags it cached
    # (a change reaches every process at once over Redis pub/sub; this bounds it when pub/sub
    # fails), and how long a recorded fallback keeps that editor on Appetize.
    preview_flags_cache_seconds: float = Field(default=5.0, gt=0, le=300)
    preview_fallback_window_seconds: int = Field(default=1800, ge=1, le=7 * 86400)
    # Failed sessions of one project and user in that window, with none started since, that
    # send the editor to Appetize (`repeated_failures`); and where the Appetize embed lives
    # (Appetize's documented https://appetize.io/embed/{publicKey}; tests point it elsewhere).
    preview_fallback_failures: int = Field(default=3, ge=1, le=100)
    preview_appetize_embed_url: str = Field(
        default="https://appetize.io/embed/", pattern=r"^https?://[^\s?#]+/$", max_length=200
    )
    # Expo Go builds the operator uploaded to Appetize (their public keys, one per platform):
    # an expo session's share answer then carries an Appetize embed that launches Expo Go on
    # the session (`appetizeUrl`). Unset: no such embed.
    preview_appetize_expo_go_ios_key: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_-]{1,100}$"
    )
    preview_appetize_expo_go_android_key: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_-]{1,100}$"
    )
    # Only `dev` sets this: it enables the demo login route.
    preview_dev_mode: bool = False
    # Browser origins allowed on the editor socket (comma-separated), besides the public URL's.
    preview_allowed_origins: str = ""
    # Production previews live at https://{session}.{PREVIEW_DOMAIN}/ (wildcard certificate);
    # without it, http://{session}.preview.localhost:{port}/ (development).
    preview_domain: str | None = None
    # Where preview machines' agents connect (the sandbox WebSocket). Default: the public URL's
    # host, ws(s)://…/api/sandbox/ws. Local machines run on this host, so dev uses loopback.
    preview_sandbox_ws_url: str | None = None
    # Local provider: run the placeholder instead of the agent (no npm, no dev server).
    preview_local_placeholder: bool = False
    # Local provider: the most processes (and threads) one machine may run (its cgroup's
    # pids.max); Vite with esbuild needs a few dozen. Memory and CPU come from its guest size.
    preview_local_pids_max: int = Field(default=512, ge=32, le=65536)
    # Outbound destinations a Fly preview machine may reach (host:port, comma-separated).
    preview_egress_allow: str = ""
    # A registry mirror Fly preview machines install dependencies from (docs/templates.md,
    # "Dependencies"); its host must be in PREVIEW_EGRESS_ALLOW. Unset: only the image's cache.
    preview_npm_registry: str | None = Field(
        default=None, pattern=r"^https?://[^\s?#]+/$", max_length=300
    )
    # PREVIEW_PROVIDER=fly: the app that holds the preview machines, a token for the Machines
    # API, the preview image, and the regions to try in order (capacity errors fall back).
    fly_api_token: SecretStr | None = None
    fly_preview_app: str | None = None
    preview_image: str | None = None
    preview_regions: str = ""

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgres://", "postgresql://")):
            raise ValueError("must start with postgresql:// or postgres://")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("supabase_url", "preview_public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value

    @field_validator("preview_templates")
    @classmethod
    def _templates(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",") if n.strip()]
        if not names or not all(_NAME.match(n) for n in names):
            raise ValueError("a comma-separated list of lowercase names")
        return ",".join(names)

    @field_validator("preview_trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, value: str) -> str:
        entries = [e.strip() for e in value.split(",") if e.strip()]
        if entries == ["*"]:
            return "*"
        for entry in entries:
            # Strict, as uvicorn parses it: uvicorn would take a malformed entry for a literal
            # that no peer ever matches, and say nothing.
            try:
                ipaddress.ip_network(entry)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        return ",".join(entries)

    @property
    def preview_scheme(self) -> str:
        """The previews' scheme: https under PREVIEW_DOMAIN (its wildcard certificate), else
        the public URL's (development)."""
        return "https" if self.preview_domain else urlsplit(self.preview_public_url).scheme

    @property
    def trusted_proxies(self) -> list[str]:
        return [e for e in self.preview_trusted_proxies.split(",") if e]

    @property
    def templates(self) -> tuple[str, ...]:
        return tuple(self.preview_templates.split(","))

    @field_validator("preview_regions")
    @classmethod
    def _regions(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",") if n.strip()]
        if not all(_NAME.match(n) for n in names):
            raise ValueError("a comma-separated list of lowercase names")
        return ",".join(names)

    @property
    def regions(self) -> tuple[str, ...]:
        """The regions sessions may name: the default one, then PREVIEW_REGIONS. Anything else
        is refused, so that no request can make a pool (and its warm machines) appear."""
        listed = [r for r in self.preview_regions.split(",") if r]
        return tuple(dict.fromkeys([self.preview_default_region, *listed]))

    @property
    def allowed_origins(self) -> tuple[str, ...]:
        listed = [o.strip().rstrip("/") for o in self.preview_allowed_origins.split(",")]
        return (self.preview_public_url, *[o for o in listed if o])

    @property
    def sandbox_ws_url(self) -> str:
        if self.preview_sandbox_ws_url:
            return self.preview_sandbox_ws_url
        scheme = "wss" if self.preview_public_url.startswith("https") else "ws"
        host = self.preview_public_url.split("://", 1)[1]
        return f"{scheme}://{host}/api/sandbox/ws"

    @property
    def egress_allow(self) -> str:
        """What a Fly preview machine may reach: PREVIEW_EGRESS_ALLOW, else only the sandbox
        socket's host and port (the agent must reach the orchestrator; nothing else has to)."""
        if self.preview_egress_allow.strip():
            return self.preview_egress_allow.strip()
        url = urlsplit(self.sandbox_ws_url)
        port = url.port or (443 if url.scheme == "wss" else 80)
        host = url.hostname or ""
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def machine_env(self) -> dict[str, str]:
        """The environment every Fly preview machine gets besides its template and token
        (sandbox/agent/main.py and sandbox/egress.sh read it). No secret of the orchestrator
        goes here."""
        env = {
            "PREVIEW_ORCHESTRATOR_URL": self.sandbox_ws_url,
            "PREVIEW_EGRESS_ALLOW": self.egress_allow,
        }
        if self.preview_npm_registry:
            env["PREVIEW_NPM_REGISTRY"] = self.preview_npm_registry
        return env

    @property
    def jwks_url(self) -> str | None:
        return f"{self.supabase_url}/auth/v1/.well-known/jwks.json" if self.supabase_url else None

    @property
    def snapshot_retention_seconds(self) -> float:
        return self.preview_snapshot_retention_hours * 3600

    def require_service_config(self) -> None:
        """What `web` and `worker` need that `dev` provides for itself."""
        for name in ("database_url", "redis_url"):
            if getattr(self, name) is None:
                raise SettingsError(f"{name.upper()}: not set (required outside `dev`)")
        if self.preview_provider == "fly":
            for name in ("fly_api_token", "fly_preview_app", "preview_image"):
                if getattr(self, name) is None:
                    raise SettingsError(
                        f"{name.upper()}: not set (required by PREVIEW_PROVIDER=fly)"
                    )

    def require_web_config(self) -> None:
        self.require_service_config()
        if self.supabase_jwt_secret is None and self.supabase_url is None:
            raise SettingsError(
                "SUPABASE_JWT_SECRET: not set, and neither is SUPABASE_URL (one is required to "
                "verify access tokens)"
            )
        if self.preview_token_secret is None:
            raise SettingsError("PREVIEW_TOKEN_SECRET: not set (signs session tokens)")
        if self.preview_default_template not in self.templates:
            raise SettingsError("PREVIEW_DEFAULT_TEMPLATE: not one of PREVIEW_TEMPLATES")


def load_settings(**overrides: object) -> Settings:
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]).upper() if error["loc"] else "configuration"
        raise SettingsError(f"{name}: {error['msg']}") from None
    if settings.preview_pool_min > settings.preview_pool_max:
        raise SettingsError("PREVIEW_POOL_MIN: greater than PREVIEW_POOL_MAX")
    return settings
