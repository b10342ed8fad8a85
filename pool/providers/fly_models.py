"""What the Fly Machines API sends and receives, and how it maps onto the pool's types.

Response bodies cross a trust boundary, so they are parsed with pydantic (unknown fields are
ignored: Fly adds fields freely). A Machine's `config` stays a plain dict, because an update
must send back the whole config, fields we do not model included (research notes section 2,
"update replaces the whole config").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, RootModel

from pool.core.provider import Machine, MachineState

# Fly's states (research notes section 3) onto the provider's. Suspended and suspending have
# their own provider states: the pool's suspended tier must tell a snapshot that resumes in a few
# hundred ms from a stopped machine that boots cold. The raw state is also kept in
# Machine.metadata["fly_state"].
_STATES: dict[str, MachineState] = {
    "creating": MachineState.CREATED,
    "created": MachineState.CREATED,
    "starting": MachineState.STARTING,
    "restarting": MachineState.STARTING,
    # An update reboots a running machine on its new version; it is on its way back up.
    "updating": MachineState.STARTING,
    "replacing": MachineState.STARTING,
    "started": MachineState.STARTED,
    "stopping": MachineState.STOPPING,
    "suspending": MachineState.SUSPENDING,
    "stopped": MachineState.STOPPED,
    "suspended": MachineState.SUSPENDED,
    "failed": MachineState.FAILED,
    "launch_failed": MachineState.FAILED,
    # Destroying cannot be undone, and the terminal states are gone for good.
    "destroying": MachineState.DESTROYED,
    "destroyed": MachineState.DESTROYED,
    "replaced": MachineState.DESTROYED,
    "migrated": MachineState.DESTROYED,
}

# What GET .../wait accepts for `state`; the transient provider states are polled instead.
WAITABLE: dict[MachineState, str] = {
    MachineState.STARTED: "started",
    MachineState.STOPPED: "stopped",
    MachineState.SUSPENDED: "suspended",
    MachineState.DESTROYED: "destroyed",
    MachineState.FAILED: "failed",
}


def provider_state(fly_state: str) -> MachineState:
    """The provider state for a Fly state. A state Fly adds later reads as STARTING: "in
    transition, do not act on it yet", which the wait deadline bounds; reading it as FAILED
    would make the reconciler destroy healthy machines."""
    return _STATES.get(fly_state, MachineState.STARTING)


@dataclass(frozen=True)
class FlyMachineDefaults:
    """What every machine of the pool gets besides its template's size."""

    cpu_kind: str = "shared"
    restart_policy: str = "on-failure"
    restart_max_retries: int = 2
    agent_port: int = 8080
    # The command `exec` runs for a health check; None trusts Fly's own state and checks.
    health_command: tuple[str, ...] | None = None
    exec_timeout: int = 10
    # What every machine's agent is told besides its template and token: where the
    # orchestrator's sandbox socket is (PREVIEW_ORCHESTRATOR_URL) and what the image's egress
    # filter lets out (PREVIEW_EGRESS_ALLOW). No orchestrator secret ever goes here.
    env: Mapping[str, str] = field(default_factory=dict)


# The environment variable that carries a machine's own token to its agent.
TOKEN_ENV = "PREVIEW_MACHINE_TOKEN"


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CheckBody(_Body):
    name: str = ""
    status: str = ""


class MachineBody(_Body):
    id: str
    state: str
    region: str = ""
    config: dict[str, Any] = Field(default_factory=dict)
    private_ip: str = ""
    created_at: str = ""
    version: str = ""
    instance_id: str = ""
    checks: list[CheckBody] = Field(default_factory=list)

    @property
    def current_version(self) -> str:
        return self.version or self.instance_id

    @property
    def metadata(self) -> dict[str, str]:
        raw = self.config.get("metadata")
        if not isinstance(raw, dict):
            return {}
        return {str(key): str(value) for key, value in raw.items()}


class LeaseBody(_Body):
    nonce: str
    expires_at: int = 0
    owner: str = ""


class LeaseEnvelope(_Body):
    """Real lease responses are wrapped in {"status", "data"}; the spec shows them flat."""

    data: LeaseBody | None = None
    nonce: str | None = None

    def lease(self) -> LeaseBody:
        if self.data is not None:
            return self.data
        if self.nonce is not None:
            return LeaseBody(nonce=self.nonce)
        raise ValueError("lease response carries no nonce")


class ExecResult(_Body):
    exit_code: int = -1
    exit_signal: int = 0
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.exit_signal == 0


class ErrorBody(_Body):
    error: str = ""
    status: str | None = None


def machine_config(
    *,
    image: str,
    cpu_kind: str,
    cpus: int,
    memory_mb: int,
    metadata: dict[str, str],
    env: Mapping[str, str],
    agent_port: int,
    restart_policy: str,
    restart_max_retries: int,
) -> dict[str, Any]:
    """A new preview machine's config.

    `env` is the agent's configuration, its machine token included (see `with_token`).

    The one service exists for `fly-replay` alone: Fly's proxy delivers a replayed request to
    a service of the target app, so the preview origin's requests reach the agent's front on
    `agent_port` through it. It is not public, because the previews app never gets a public IP
    (services are public only on an app that has one; research notes section 7, and
    tests/lint_deploy.sh keeps `fly.preview.toml` without IPs and services). The pool starts,
    stops and suspends machines itself, so the proxy must neither autostart nor autostop them.
    `auto_destroy` is off because the pool keeps stopped and suspended machines for reuse; an
    auto-destroying machine would vanish on stop.
    """
    restart: dict[str, Any] = {"policy": restart_policy}
    if restart_policy == "on-failure":
        restart["max_retries"] = restart_max_retries
    return {
        "image": image,
        "guest": {"cpu_kind": cpu_kind, "cpus": cpus, "memory_mb": memory_mb},
        "metadata": dict(metadata),
        "env": dict(env),
        "services": [
            {
                "protocol": "tcp",
                "internal_port": agent_port,
                "autostart": False,
                "autostop": "off",
                "ports": [
                    {"port": 80, "handlers": ["http"]},
                    {"port": 443, "handlers": ["tls", "http"]},
                ],
            }
        ],
        "auto_destroy": False,
        "restart": restart,
    }


def with_token(config: Mapping[str, Any], token: str) -> dict[str, Any]:
    """The whole config with a new machine token in the agent's environment (an update
    replaces, never merges, so everything else is sent back as it was)."""
    env = dict(config.get("env") or {})
    env[TOKEN_ENV] = token
    return {**config, "env": env}


def resized_config(config: dict[str, Any], cpus: int, memory_mb: int) -> dict[str, Any]:
    """The whole config with only the guest size changed (an update replaces, never merges)."""
    guest = dict(config.get("guest") or {})
    guest.update(cpus=cpus, memory_mb=memory_mb)
    return {**config, "guest": guest}


def to_machine(body: MachineBody, *, app_name: str, agent_port: int) -> Machine:
    metadata = body.metadata
    state = provider_state(body.state)
    failing = any(check.status not in ("", "passing") for check in body.checks)
    extra = {"fly_state": body.state, "version": body.current_version}
    env = body.config.get("env")
    if isinstance(env, dict) and env.get(TOKEN_ENV):
        # The pool keeps the token's hash to authenticate the agent's socket (as with the
        # local provider, which reports its machines' tokens the same way).
        extra["token"] = str(env[TOKEN_ENV])
    guest = body.config.get("guest")
    if isinstance(guest, dict) and "cpus" in guest and "memory_mb" in guest:
        # What a rolling resize compares with the pool's wanted size (pool.core.provider.guest_of).
        extra.update(guest_cpus=str(guest["cpus"]), guest_memory_mb=str(guest["memory_mb"]))
    if body.private_ip:
        extra["private_ip"] = body.private_ip
    return Machine(
        id=body.id,
        template=metadata.get("template", ""),
        region=body.region or metadata.get("region", ""),
        state=state,
        # The stable 6PN name: private IPs change when Fly migrates a machine (notes section 7).
        address=f"http://{body.id}.vm.{app_name}.internal:{agent_port}",
        created_at=_timestamp(body.created_at),
        healthy=state is MachineState.STARTED and not failing,
        metadata={**metadata, **extra},
    )


def _timestamp(value: str) -> float:
    if not value:
        return 0.0
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return 0.0


class MachineList(RootModel[list[MachineBody]]):
    pass
