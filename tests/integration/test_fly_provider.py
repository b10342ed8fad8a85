"""FlyProvider against the Fly Machines fake (tests/fakes/fly_api.py), on a virtual clock.

Every request the provider sends is validated by the fake against Fly's OpenAPI document;
the `fake` fixture fails any test in which one did not conform, or in which the fake's own
answers broke the document, or in which the provider exceeded Fly's rate limits.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from pool.core.errors import CapacityExhausted, MachineNotFound, ProviderError
from pool.core.provider import Machine, MachineSpec, MachineState
from pool.providers.fly import FlyMachineDefaults, FlyProvider, FlyRuntime, FlyTuning
from pool.providers.fly_client import FlyAPIError, LeaseConflict, error_from_response
from pool.providers.fly_models import ErrorBody, provider_state
from pool.providers.fly_ratelimit import Rate, ReservationBucket
from pool.services.metrics import NullMetrics
from tests.fakes.fly_api import FakeFlyAPI
from tests.fakes.fly_faults import FlyNetwork
from tests.fakes.fly_state import Latencies
from tests.fakes.virtual_clock import VirtualClock

APP = "preview-test"
TOKEN = "test-token"
OTHER_TOKEN = "other-token"
IMAGE = "registry.fly.io/preview-sandbox@sha256:" + "a" * 64
SPEC = MachineSpec(template="react-web", region="ams", cpus=2, memory_mb=2048)
AGENT_ENV = {
    "PREVIEW_ORCHESTRATOR_URL": "ws://preview-orchestrator.internal:8080/api/sandbox/ws",
    "PREVIEW_EGRESS_ALLOW": "preview-orchestrator.internal:8080",
}
BOOT = 30.0


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def fake(clock: VirtualClock) -> Iterator[FakeFlyAPI]:
    fake = FakeFlyAPI(clock, tokens={TOKEN: "pool@example.com", OTHER_TOKEN: "ops@example.com"})
    yield fake
    assert fake.spec_violations == [], "the client sent requests the OpenAPI document forbids"
    assert fake.response_violations == [], "the fake answered outside the OpenAPI document"
    assert fake.rate_limit_violations == [], "the client exceeded Fly's rate limits"


@pytest.fixture
def network(fake: FakeFlyAPI) -> FlyNetwork:
    return FlyNetwork(fake.app)


MakeProvider = Callable[..., FlyProvider]


@pytest.fixture
async def provider_for(network: FlyNetwork, clock: VirtualClock) -> AsyncIterator[MakeProvider]:
    """Providers on the fake and the virtual clock (jitter pinned), closed after the test."""
    made: list[FlyProvider] = []

    def make(**options: Any) -> FlyProvider:
        options.setdefault("regions", ("ams", "fra"))
        options.setdefault("token", TOKEN)
        provider = FlyProvider(
            APP,
            image=IMAGE,
            runtime=FlyRuntime(
                transport=network, clock=clock.now, sleep=clock.sleep, rand=lambda: 0.5
            ),
            **options,
        )
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


@pytest.fixture
def fly(provider_for: MakeProvider) -> FlyProvider:
    return provider_for()


@pytest.fixture
async def raw(network: FlyNetwork) -> AsyncIterator[httpx.AsyncClient]:
    """Another API client of the same app (an operator's flyctl, another worker)."""
    async with httpx.AsyncClient(
        transport=network,
        base_url=f"https://api.machines.dev/v1/apps/{APP}",
        headers={"Authorization": f"Bearer {OTHER_TOKEN}"},
    ) as client:
        yield client


async def started(fly: FlyProvider, spec: MachineSpec = SPEC) -> Machine:
    machine = await fly.create(spec)
    return await fly.wait(machine.id, MachineState.STARTED, BOOT)


# -- lifecycle --------------------------------------------------------------------------------


async def test_create_sends_a_private_tagged_machine_and_it_boots(
    provider_for: MakeProvider, fake: FakeFlyAPI
) -> None:
    fly = provider_for(defaults=FlyMachineDefaults(env=AGENT_ENV))
    created = await fly.create(SPEC)

    assert created.state is MachineState.CREATED
    assert created.region == "ams" and created.template == "react-web"
    (call,) = fake.calls("Machines_create")
    assert call.body["region"] == "ams"
    config = call.body["config"]
    assert config["image"] == IMAGE
    assert config["guest"] == {"cpu_kind": "shared", "cpus": 2, "memory_mb": 2048}
    assert config["auto_destroy"] is False
    assert config["restart"]["policy"] == "on-failure"
    # One service, for fly-replay only: the proxy neither starts nor stops pool machines, and
    # it is private because the previews app has no public IP (tests/lint_deploy.sh).
    (service,) = config["services"]
    assert service["internal_port"] == 8080
    assert service["autostart"] is False and service["autostop"] == "off"
    # The agent's configuration; no orchestrator secret among it.
    env = config["env"]
    token = env.pop("PREVIEW_MACHINE_TOKEN")
    assert env == {**AGENT_ENV, "PREVIEW_TEMPLATE": "react-web"}
    assert len(token) >= 32 and created.metadata["token"] == token
    metadata = config["metadata"]
    assert metadata["pool"] == "preview" and metadata["template"] == "react-web"
    assert metadata["region"] == "ams" and len(metadata["create_id"]) >= 16

    machine = await fly.wait(created.id, MachineState.STARTED, BOOT)
    assert machine.state is MachineState.STARTED and machine.healthy
    assert machine.address == f"http://{created.id}.vm.{APP}.internal:8080"


async def test_stop_suspend_resume_and_destroy(fly: FlyProvider, fake: FakeFlyAPI) -> None:
    machine = await started(fly)
    fake_machine = fake.machines[machine.id]

    await fly.stop(machine.id)
    stopped = await fly.wait(machine.id, MachineState.STOPPED, BOOT)
    assert stopped.metadata["fly_state"] == "stopped"

    await fly.start(machine.id)
    await fly.wait(machine.id, MachineState.STARTED, BOOT)
    await fly.suspend(machine.id)
    suspended = await fly.wait(machine.id, MachineState.SUSPENDED, BOOT)
    assert suspended.metadata["fly_state"] == "suspended"

    await fly.start(machine.id)  # resume
    assert (await fly.wait(machine.id, MachineState.STARTED, BOOT)).healthy
    assert fake_machine.resumes == 1 and fake_machine.cold_boots == 2

    await fly.destroy(machine.id)
    gone = await fly.wait(machine.id, MachineState.DESTROYED, BOOT)
    assert gone.state is MachineState.DESTROYED
    assert fake_machine.state in ("destroying", "destroyed")
    assert fake.calls("Machines_delete")[-1].query == {"force": ["true"]}
    await fly.destroy(machine.id)  # already gone: not an error


async def test_get_and_destroy_of_an_unknown_machine(fly: FlyProvider) -> None:
    with pytest.raises(MachineNotFound):
        await fly.get("0123456789abcd")
    await fly.destroy("0123456789abcd")


async def test_start_and_stop_twice_are_not_errors(fly: FlyProvider) -> None:
    machine = await started(fly)
    again = await fly.start(machine.id)
    assert again.state is MachineState.STARTED

    await fly.stop(machine.id)
    await fly.wait(machine.id, MachineState.STOPPED, BOOT)
    assert (await fly.stop(machine.id)).state is MachineState.STOPPED


async def test_reset_cold_boots_from_the_image_even_when_suspended(
    fly: FlyProvider, fake: FakeFlyAPI
) -> None:
    machine = await started(fly)
    await fly.suspend(machine.id)
    await fly.wait(machine.id, MachineState.SUSPENDED, BOOT)
    fake_machine = fake.machines[machine.id]
    assert fake_machine.snapshot

    await fly.reset(machine.id)
    back = await fly.wait(machine.id, MachineState.STARTED, BOOT)

    assert back.healthy
    assert fake_machine.resumes == 0, "a reset must not resume the last session's snapshot"
    assert fake_machine.cold_boots == 2
    operations = [
        r.operation for r in fake.requests if r.at >= fake.calls("Machines_suspend")[0].at
    ]
    assert (
        operations.index("Machines_stop")
        < operations.index("Machines_update")
        < operations.index("Machines_start")
    )


async def test_reset_gives_the_agent_a_new_token_and_keeps_the_rest_of_the_config(
    fly: FlyProvider, fake: FakeFlyAPI
) -> None:
    machine = await started(fly)
    before = fake.machines[machine.id].config
    old_token = machine.metadata["token"]

    reset = await fly.reset(machine.id)

    assert reset.metadata["token"] != old_token
    after = fake.machines[machine.id].config
    assert after["env"]["PREVIEW_MACHINE_TOKEN"] == reset.metadata["token"]
    assert {**after, "env": {}} == {**before, "env": {}}
    assert after["env"]["PREVIEW_TEMPLATE"] == "react-web"
    (update,) = fake.calls("Machines_update")
    # Sent whole, guarded, and without booting the machine before the reset's own start.
    assert update.body["skip_launch"] is True and update.body["current_version"]
    assert (await fly.wait(machine.id, MachineState.STARTED, BOOT)).healthy


async def test_a_reset_whose_update_did_not_take_is_an_error(
    fly: FlyProvider, fake: FakeFlyAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine = await started(fly)
    fake_machine = fake.machines[machine.id]
    # Fly answers the update but the machine keeps its old config (a silent rollback, research
    # notes section 8): the machine still holds the last session's token.
    monkeypatch.setattr(fake_machine, "update", lambda now, config, skip_launch: None)

    with pytest.raises(ProviderError, match="did not take its new token"):
        await fly.reset(machine.id)
    assert fake_machine.config["env"]["PREVIEW_MACHINE_TOKEN"] == machine.metadata["token"]


async def test_every_mutation_holds_the_lease(fly: FlyProvider, fake: FakeFlyAPI) -> None:
    machine = await started(fly)
    await fly.stop(machine.id)
    await fly.wait(machine.id, MachineState.STOPPED, BOOT)
    await fly.start(machine.id)
    await fly.destroy(machine.id)

    nonces = {
        r.headers.get("fly-machine-lease-nonce") for r in fake.calls("Machines_release_lease")
    }
    for operation in ("Machines_stop", "Machines_start", "Machines_delete"):
        for call in fake.calls(operation):
            assert call.headers.get("fly-machine-lease-nonce") in nonces, operation
    assert len(fake.calls("Machines_create_lease")) == len(fake.calls("Machines_release_lease"))


# -- wait ------------------------------------------------------------------------------------


async def test_wait_loops_on_408_until_the_machine_is_up(
    provider_for: MakeProvider, clock: VirtualClock, fake: FakeFlyAPI
) -> None:
    fake.latencies = Latencies(create=150.0)
    fly = provider_for()
    machine = await fly.create(SPEC)

    up = await fly.wait(machine.id, MachineState.STARTED, 300.0)

    assert up.state is MachineState.STARTED
    waits = fake.calls("Machines_wait")
    assert [w.status for w in waits] == [408, 408, 200]
    assert all(int(w.query["timeout"][0]) <= 60 for w in waits)


async def test_wait_gives_up_at_its_deadline(
    provider_for: MakeProvider, clock: VirtualClock, fake: FakeFlyAPI
) -> None:
    fake.latencies = Latencies(create=1000.0)
    fly = provider_for()
    machine = await fly.create(SPEC)
    began = clock.now()

    with pytest.raises(ProviderError, match="in time"):
        await fly.wait(machine.id, MachineState.STARTED, 100.0)

    assert 100.0 <= clock.now() - began < 125.0


async def test_wait_for_a_machine_that_failed_to_boot_fails_fast(
    fly: FlyProvider, fake: FakeFlyAPI, clock: VirtualClock
) -> None:
    machine = await fly.create(SPEC)
    fake.machines[machine.id].fail_next_boot = True
    began = clock.now()

    with pytest.raises(ProviderError, match="failed"):
        await fly.wait(machine.id, MachineState.STARTED, 300.0)
    assert clock.now() - began < 10.0


async def test_the_fake_refuses_wait_timeouts_above_60s(
    fly: FlyProvider, raw: httpx.AsyncClient
) -> None:
    machine = await fly.create(SPEC)
    answer = await raw.get(f"/machines/{machine.id}/wait", params={"timeout": "90"})
    assert answer.status_code == 400
    assert "invalid_argument" in answer.json()["error"]


# -- idempotent create ---------------------------------------------------------------------


async def test_a_408_after_the_machine_was_made_yields_no_duplicate(
    fly: FlyProvider, fake: FakeFlyAPI
) -> None:
    fake.inject("Machines_create", 408, after=True)

    machine = await fly.create(SPEC)

    assert [m.id for m in fake.live()] == [machine.id]
    assert len(fake.calls("Machines_create")) == 1
    (lookup,) = fake.calls("Machines_list")
    assert lookup.query["metadata.create_id"] == [machine.metadata["create_id"]]


async def test_an_ambiguous_create_waits_out_a_lagging_list(
    fly: FlyProvider, fake: FakeFlyAPI
) -> None:
    fake.list_lag = 1.0
    fake.inject("Machines_create", 503, after=True)

    machine = await fly.create(SPEC)

    assert [m.id for m in fake.live()] == [machine.id]
    assert len(fake.calls("Machines_create")) == 1
    assert len(fake.calls("Machines_list")) >= 2  # the first list did not show it yet


async def test_a_lost_answer_to_create_yields_no_duplicate(
    fly: FlyProvider, fake: FakeFlyAPI, network: FlyNetwork
) -> None:
    network.lose_answer("POST", f"/apps/{APP}/machines")

    machine = await fly.create(SPEC)

    assert [m.id for m in fake.live()] == [machine.id]


async def test_a_create_that_surely_failed_is_made_again(
    fly: FlyProvider, fake: FakeFlyAPI
) -> None:
    fake.inject("Machines_create", 503)  # refused before doing anything

    machine = await fly.create(SPEC)

    assert [m.id for m in fake.live()] == [machine.id]
    assert len(fake.calls("Machines_create")) == 2


async def test_a_refused_connection_is_retried(
    fly: FlyProvider, fake: FakeFlyAPI, network: FlyNetwork
) -> None:
    network.refuse_connections(2)
    machine = await fly.create(SPEC)
    assert [m.id for m in fake.live()] == [machine.id]


# -- capacity and errors -----------------------------------------------------------------------


async def test_capacity_in_the_first_region_falls_back_to_the_next(
    fly: FlyProvider, fake: FakeFlyAPI
) -> None:
    fake.exhaust_region("ams")

    machine = await fly.create(SPEC)

    assert machine.region == "fra" and machine.metadata["region"] == "fra"
    assert [c.body["region"] for c in fake.calls("Machines_create")] == ["ams", "fra"]


async def test_capacity_everywhere_raises_capacity_exhausted(
    fly: FlyProvider, fake: FakeFlyAPI
) -> None:
    fake.exhaust_region("ams")
    fake.exhaust_region("fra")

    with pytest.raises(CapacityExhausted):
        await fly.create(SPEC)
    assert fake.live() == []


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (404, {"error": "machine not found"}, MachineNotFound),
        (412, {"error": "no room", "status": "insufficient_capacity"}, CapacityExhausted),
        (412, {"error": "insufficient resources to create new machine"}, CapacityExhausted),
        (409, {"error": "insufficient memory available to fulfill request"}, CapacityExhausted),
        (403, {"error": "over the allowed quota"}, CapacityExhausted),
        (409, {"error": "aborted: lease currently held by x"}, LeaseConflict),
        (409, {"error": "current_version is stale"}, FlyAPIError),
        (412, {"error": "unable to start machine from current state: 'started'"}, FlyAPIError),
        (503, {"error": "no capacity"}, FlyAPIError),  # 5xx: retried, never a region change
        (500, "<html>oops</html>", FlyAPIError),
    ],
)
def test_error_mapping(status: int, body: Any, error: type[ProviderError]) -> None:
    kwargs = {"json": body} if isinstance(body, dict) else {"text": body}
    mapped = error_from_response(httpx.Response(status, **kwargs), "call")
    assert type(mapped) is error


async def test_a_bad_token_is_a_provider_error(provider_for: MakeProvider) -> None:
    with pytest.raises(FlyAPIError) as caught:
        await provider_for(token="wrong").list()
    assert caught.value.status == 401


# -- retries and rate limits -------------------------------------------------------------------


async def test_429_is_retried_after_retry_after(fly: FlyProvider, fake: FakeFlyAPI) -> None:
    machine = await fly.create(SPEC)
    fake.inject("Machines_show", 429, retry_after=5)

    assert (await fly.get(machine.id)).id == machine.id

    first, second = fake.calls("Machines_show")
    assert first.status == 429 and second.status == 200
    assert second.at - first.at >= 5.0


async def test_5xx_is_retried_with_exponential_backoff(fly: FlyProvider, fake: FakeFlyAPI) -> None:
    machine = await fly.create(SPEC)
    fake.inject("Machines_show", 503, times=3)

    await fly.get(machine.id)

    calls = fake.calls("Machines_show")
    assert [c.status for c in calls] == [503, 503, 503, 200]
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(calls)]
    # base 0.5 doubling, full jitter with rand() = 0.5 halves each ceiling
    assert gaps == pytest.approx([0.25, 0.5, 1.0])


async def test_5xx_that_persists_becomes_a_provider_error(
    fly: FlyProvider, fake: FakeFlyAPI
) -> None:
    machine = await fly.create(SPEC)
    fake.inject("Machines_show", 502, times=10)

    with pytest.raises(FlyAPIError) as caught:
        await fly.get(machine.id)
    assert caught.value.status == 502
    assert len(fake.calls("Machines_show")) == 5


async def test_a_burst_of_operations_stays_within_fly_rate_limits(
    fly: FlyProvider, fake: FakeFlyAPI, clock: VirtualClock
) -> None:
    fake.check_answers = False  # every other test checks them; this one is about pacing
    began, virtual_began = time.monotonic(), clock.now()

    async def lifecycle() -> None:
        machine = await fly.create(SPEC)
        await fly.wait(machine.id, MachineState.STARTED, BOOT)
        for _ in range(3):
            await fly.get(machine.id)
        await fly.stop(machine.id)
        await fly.destroy(machine.id)

    await asyncio.gather(*(lifecycle() for _ in range(15)))  # 15 x 7 = 105 operations

    assert fake.rate_limit_violations == []
    assert fake.live() == []
    # Creates are limited per app to 1/s after a burst of 3: the limiter spread them out.
    assert clock.now() - virtual_began >= 15 - 3
    assert time.monotonic() - began < 10.0


@pytest.mark.parametrize(
    ("moments", "delays"),
    [
        ([0, 0, 0, 0, 0], [0, 0, 0, 1, 2]),  # burst of 3, then one per second
        ([0, 0, 0, 10, 10, 10, 10], [0, 0, 0, 0, 0, 0, 1]),  # idle time refills to the burst
        ([0, 0.5, 1.0, 1.5, 2.0, 2.5], [0, 0, 0, 0, 0, 0.5]),
    ],
)
def test_token_bucket_reservations(moments: list[float], delays: list[float]) -> None:
    bucket = ReservationBucket(Rate(per_second=1.0, burst=3), now=0.0)
    assert [bucket.reserve(at) for at in moments] == pytest.approx(delays)


# -- leases, update, exec, list ------------------------------------------------------------


async def test_a_lease_held_elsewhere_refuses_our_mutation(
    fly: FlyProvider, fake: FakeFlyAPI, raw: httpx.AsyncClient, clock: VirtualClock
) -> None:
    machine = await started(fly)
    held = await raw.post(f"/machines/{machine.id}/lease", json={"ttl": 600})
    assert held.status_code == 201
    # Fly's limits are per machine, whoever asks: let the other client's request age out.
    clock.advance(3.0)

    unleased = await raw.post(f"/machines/{machine.id}/stop")  # no nonce: the fake refuses
    assert unleased.status_code == 409 and "lease currently held" in unleased.json()["error"]

    with pytest.raises(LeaseConflict):
        await fly.stop(machine.id)
    assert fake.machines[machine.id].state == "started"
    assert fake.calls("Machines_stop")[-1].status == 409  # only the raw client's attempt
    assert len(fake.calls("Machines_create_lease")) == 1 + 5  # raw + our attempts


async def test_a_lease_released_in_time_lets_our_mutation_through(
    fly: FlyProvider, fake: FakeFlyAPI, raw: httpx.AsyncClient, clock: VirtualClock
) -> None:
    machine = await started(fly)
    assert (await raw.post(f"/machines/{machine.id}/lease", json={"ttl": 3})).status_code == 201
    clock.advance(2.0)

    await fly.stop(machine.id)

    assert fake.machines[machine.id].state in ("stopping", "stopped")
    refused = [c for c in fake.calls("Machines_create_lease") if c.status == 409]
    assert refused, "the first attempts met the other holder's lease"


async def test_resize_sends_the_whole_config_with_current_version(
    fly: FlyProvider, fake: FakeFlyAPI
) -> None:
    machine = await started(fly)
    before = fake.machines[machine.id]
    config_before, version_before = dict(before.config), before.version

    resized = await fly.resize(machine.id, cpus=4, memory_mb=4096)

    (update,) = fake.calls("Machines_update")
    assert update.body["current_version"] == version_before
    expected = {**config_before, "guest": {"cpu_kind": "shared", "cpus": 4, "memory_mb": 4096}}
    assert update.body["config"] == expected
    assert before.config == expected and before.version != version_before
    assert resized.metadata["version"] == before.version


async def test_resize_of_a_stopped_machine_leaves_it_stopped(
    fly: FlyProvider, fake: FakeFlyAPI
) -> None:
    machine = await started(fly)
    await fly.stop(machine.id)
    await fly.wait(machine.id, MachineState.STOPPED, BOOT)
    boots = fake.machines[machine.id].cold_boots

    await fly.resize(machine.id, cpus=2, memory_mb=4096)

    # A plain update would boot it (Fly starts an updated machine unless told not to); a
    # stopped-tier machine must not run, and cost, behind the pool's back.
    (update,) = fake.calls("Machines_update")
    assert update.body["skip_launch"] is True
    after = await fly.get(machine.id)
    assert after.state is MachineState.STOPPED and after.metadata["guest_memory_mb"] == "4096"
    assert fake.machines[machine.id].cold_boots == boots


async def test_resize_reads_again_after_a_stale_version(fly: FlyProvider, fake: FakeFlyAPI) -> None:
    machine = await started(fly)
    fake.inject("Machines_update", 409, error="current_version is stale")

    await fly.resize(machine.id, cpus=1, memory_mb=512)

    assert [c.status for c in fake.calls("Machines_update")] == [409, 200]
    assert fake.machines[machine.id].config["guest"]["memory_mb"] == 512


async def test_exec_exit_code_decides_health(
    provider_for: MakeProvider, clock: VirtualClock, fake: FakeFlyAPI
) -> None:
    check = ("curl", "-fsS", "http://127.0.0.1:8080/healthz")
    fly = provider_for(defaults=FlyMachineDefaults(health_command=check))
    machine = await fly.create(SPEC)
    fake.exec_results[machine.id] = (7, "", "connection refused")

    with pytest.raises(ProviderError, match="in time"):
        await fly.wait(machine.id, MachineState.STARTED, 10.0)
    result = await fly.exec(machine.id, check)
    assert result.exit_code == 7 and not result.ok  # HTTP 200 all the same
    assert fake.calls("Machines_exec")[-1].status == 200
    assert not await fly.check_health(machine.id)

    fake.exec_results[machine.id] = (0, "ok", "")
    assert (await fly.wait(machine.id, MachineState.STARTED, 10.0)).healthy
    assert fake.calls("Machines_exec")[-1].body["command"] == list(check)


async def test_list_follows_cursors_across_short_pages(
    provider_for: MakeProvider, clock: VirtualClock, fake: FakeFlyAPI
) -> None:
    fake.short_pages = True
    fly = provider_for(tuning=FlyTuning(page_size=3))
    others = provider_for(pool="other")
    stranger = (await others.create(SPEC)).id
    clock.advance(1.0)  # the other instance's create counts against the same app limit
    made = {(await fly.create(SPEC)).id for _ in range(8)}

    listed = {m.id for m in await fly.list()}

    assert listed == made and stranger not in listed
    pages = fake.calls("Machines_list")
    assert len(pages) >= 4 and all(p.query["metadata.pool"] == ["preview"] for p in pages)
    assert sum("cursor" in p.query for p in pages) == len(pages) - 1


# -- the fake's validator bites ----------------------------------------------------------------


async def test_requests_that_break_the_openapi_document_are_refused_and_recorded(
    fake: FakeFlyAPI, raw: httpx.AsyncClient
) -> None:
    bad_body = {"region": "ams", "config": {"image": IMAGE, "guest": {"cpus": "two"}}}
    answer = await raw.post("/machines", json=bad_body)
    assert answer.status_code == 400
    bad_enum = await raw.post(
        "/machines", json={"config": {"image": IMAGE, "restart": {"policy": "sometimes"}}}
    )
    assert bad_enum.status_code == 400
    bad_query = await raw.get("/machines/0123456789abcd/wait", params={"state": "ready"})
    assert bad_query.status_code == 400
    no_nonce = await raw.delete("/machines/0123456789abcd/lease")
    assert no_nonce.status_code == 400

    assert len(fake.spec_violations) == 4
    assert "'two' is not of type 'integer'" in fake.spec_violations[0]
    assert "fly-machine-lease-nonce" in fake.spec_violations[3]
    assert fake.live() == []
    fake.spec_violations.clear()  # seen: the fixture's check is for the provider's requests


@pytest.mark.parametrize(
    ("fly_state", "state"),
    [
        ("created", MachineState.CREATED),
        ("starting", MachineState.STARTING),
        ("started", MachineState.STARTED),
        ("stopping", MachineState.STOPPING),
        ("stopped", MachineState.STOPPED),
        ("suspending", MachineState.SUSPENDING),
        ("suspended", MachineState.SUSPENDED),
        ("replacing", MachineState.STARTING),
        ("updating", MachineState.STARTING),
        ("destroying", MachineState.DESTROYED),
        ("destroyed", MachineState.DESTROYED),
        ("failed", MachineState.FAILED),
        ("launch_failed", MachineState.FAILED),
        ("something_new", MachineState.STARTING),
    ],
)
def test_state_mapping(fly_state: str, state: MachineState) -> None:
    assert provider_state(fly_state) is state


def test_error_body_without_status_parses() -> None:
    assert ErrorBody.model_validate_json(b'{"error": "x"}').status is None


async def test_api_errors_and_rate_limit_waits_reach_the_metrics(
    network: FlyNetwork, clock: VirtualClock, fake: FakeFlyAPI
) -> None:
    metrics = NullMetrics()
    fly = FlyProvider(
        APP,
        TOKEN,
        IMAGE,
        regions=("ams",),
        runtime=FlyRuntime(
            transport=network, clock=clock.now, sleep=clock.sleep, rand=lambda: 0.5, meter=metrics
        ),
    )
    try:
        machine = await fly.create(SPEC)
        fake.inject("Machines_show", 429, retry_after=5)
        fake.inject("Machines_show", 503, times=2)
        await fly.get(machine.id)
    finally:
        await fly.aclose()
    errors = metrics.provider_errors
    assert errors.labels("fly", "rate_limited").value == 1
    assert errors.labels("fly", "server").value == 2
    # The 429's Retry-After (5 s on the virtual clock), at least.
    assert metrics.provider_waits.labels("fly").value >= 5.0
