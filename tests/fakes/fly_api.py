"""A faithful fake of the Fly Machines API, as a Starlette app (drive it with FlyNetwork or
httpx.ASGITransport; no sockets).

Every request is first validated against the official OpenAPI document; one that does not
conform is answered 400 and recorded in `spec_violations`, so a test can assert the client
never sent one. Then, in Fly's order: auth (401), rate limits (429, recorded in
`rate_limit_violations`), injected faults, the machine's lease (409), and the operation.

Behaviour follows the notes in ../shared/fly/machines-api-research.md (the workplace's research on
Fly's real behaviour): the state machine with latencies
(fly_state), wait with its 60 s cap and 408, leases with nonces, update guarded by
current_version, destroy with force (or fly-go's kill), list filtered by metadata with cursor
pagination and eventual consistency, exec answering 200 whatever the exit code, capacity
refusals per region. Time comes from a VirtualClock shared with the client under test.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.fly_faults import Fault, Faults, RateLimits
from tests.fakes.fly_listing import as_int, list_page
from tests.fakes.fly_state import PERSISTENT, FakeMachine, Latencies, Refused
from tests.fakes.openapi_check import SpecValidator
from tests.fakes.virtual_clock import VirtualClock

WALL_EPOCH = 1_760_000_000.0  # what virtual time 0 is on the wall clock
MAX_WAIT = 60
CAPACITY = Fault(
    412,
    "insufficient resources available to fulfill request: could not reserve resource for "
    "machine: insufficient memory available to fulfill request",
    after=False,
    fly_status="insufficient_capacity",
)
# Writes refused without the nonce while someone holds the machine's lease.
_MUTATIONS = frozenset(
    {"Machines_update", "Machines_delete", "Machines_start", "Machines_stop", "Machines_suspend"}
)


@dataclass
class Call:
    request: Request
    operation: str
    now: float
    owner: str
    body: Any

    @property
    def nonce(self) -> str | None:
        return self.request.headers.get("fly-machine-lease-nonce")


@dataclass
class RecordedRequest:
    operation: str
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    at: float
    status: int = 0


Handler = Callable[[Call, FakeMachine | None], Awaitable[Response]]


@dataclass
class FakeFlyAPI:
    clock: VirtualClock
    app_name: str = "preview-test"
    tokens: dict[str, str] = field(default_factory=lambda: {"test-token": "pool@example.com"})
    regions: tuple[str, ...] = ("ams", "fra", "iad", "ord", "lhr", "sjc")
    latencies: Latencies = field(default_factory=Latencies)
    list_lag: float = 0.0  # seconds before a new machine shows up in lists
    short_pages: bool = False  # every other page comes back empty (the limit is advisory)
    check_answers: bool = True  # validate the fake's own 2xx answers against the document
    machines: dict[str, FakeMachine] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    spec_violations: list[str] = field(default_factory=list)
    response_violations: list[str] = field(default_factory=list)
    rate_limit_violations: list[tuple[str, str, float]] = field(default_factory=list)
    exhausted: dict[str, Fault] = field(default_factory=dict)
    exec_results: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    request_latency: dict[str, float] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)

    def __post_init__(self) -> None:
        self._validator = SpecValidator()
        self._limits = RateLimits()
        self.app = Starlette(routes=self._routes())

    # -- what tests use ----------------------------------------------------------------------

    def inject(
        self,
        operation: str,
        status: int,
        *,
        times: int = 1,
        after: bool = False,
        error: str = "injected failure",
        retry_after: float | None = None,
    ) -> None:
        """The next `times` calls of `operation` answer `status`; with after=True the fake
        does the work first (a create that made the machine, then answered 408)."""
        self.faults.add(operation, Fault(status, error, after, retry_after=retry_after), times)

    def exhaust_region(self, region: str, fault: Fault = CAPACITY) -> None:
        self.exhausted[region] = fault

    def live(self) -> list[FakeMachine]:
        return [m for m in self.machines.values() if m.state not in ("destroying", "destroyed")]

    def calls(self, operation: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.operation == operation]

    # -- plumbing ----------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        app = "/v1/apps/{app_name}/machines"
        one = app + "/{machine_id}"
        table: list[tuple[str, str, str, Handler]] = [
            (app, "GET", "Machines_list", self._list),
            (app, "POST", "Machines_create", self._create),
            (one, "GET", "Machines_show", self._show),
            (one, "POST", "Machines_update", self._update),
            (one, "DELETE", "Machines_delete", self._delete),
            (one + "/start", "POST", "Machines_start", self._start),
            (one + "/stop", "POST", "Machines_stop", self._stop),
            (one + "/suspend", "POST", "Machines_suspend", self._suspend),
            (one + "/wait", "GET", "Machines_wait", self._wait),
            (one + "/lease", "POST", "Machines_create_lease", self._lease_create),
            (one + "/lease", "GET", "Machines_show_lease", self._lease_show),
            (one + "/lease", "DELETE", "Machines_release_lease", self._lease_release),
            (one + "/exec", "POST", "Machines_exec", self._exec),
        ]
        routes = [Route(t, self._endpoint(t, op, h), methods=[m]) for t, m, op, h in table]
        unknown = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        return [*routes, Route("/{rest:path}", self._unknown, methods=unknown)]

    async def _unknown(self, request: Request) -> Response:
        problem = f"{request.method} {request.url.path} is not an endpoint this fake serves"
        self.spec_violations.append(problem)
        return _error(404, problem)

    def _endpoint(self, template: str, operation: str, handler: Handler) -> Any:
        async def endpoint(request: Request) -> Response:
            raw = await request.body()
            body = _json(raw)
            record = RecordedRequest(
                operation,
                request.method,
                request.url.path,
                {k: request.query_params.getlist(k) for k in request.query_params},
                dict(request.headers),
                body,
                self.clock.now(),
            )
            self.requests.append(record)
            response = await self._serve(request, operation, handler, raw, body)
            if self.check_answers and 200 <= response.status_code < 300:
                self.response_violations += self._validator.response_errors(
                    request, template, response.status_code, bytes(response.body), {}
                )
            record.status = response.status_code
            return response

        return endpoint

    async def _serve(
        self, request: Request, operation: str, handler: Handler, raw: bytes, body: Any
    ) -> Response:
        errors = self._validator.request_errors(request, raw)
        if errors:
            self.spec_violations += [f"{operation}: {error}" for error in errors]
            return _error(400, "request does not conform to the OpenAPI document: " + str(errors))
        owner = self._owner(request)
        if owner is None:
            return _error(401, "unauthorized")
        now = self.clock.now()
        scope = request.path_params.get("machine_id") or request.path_params["app_name"]
        wait = self._limits.take(operation, scope, now)
        if wait:
            self.rate_limit_violations.append((operation, scope, now))
            return _error(429, "rate limit exceeded", {"retry-after": str(max(1, round(wait)))})
        fault = self.faults.take(operation)
        if fault is not None and not fault.after:
            return _error(fault.status, fault.error, fault.headers(), fault.fly_status)
        if latency := self.request_latency.get(operation, 0.0):
            await self.clock.sleep(latency)
        call = Call(request, operation, self.clock.now(), owner, body)
        try:
            response = await handler(call, self._machine_for(call))
        except Refused as exc:
            response = _error(exc.status, exc.message, None, exc.fly_status)
        if fault is not None:
            return _error(fault.status, fault.error, fault.headers(), fault.fly_status)
        return response

    def _owner(self, request: Request) -> str | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return self.tokens.get(token) if scheme == "Bearer" else None

    def _machine_for(self, call: Call) -> FakeMachine | None:
        params = call.request.path_params
        if params["app_name"] != self.app_name:
            raise Refused(404, f"app {params['app_name']} not found")
        if "machine_id" not in params:
            return None
        machine = self.machines.get(params["machine_id"])
        if machine is not None:
            machine.settle(call.now)
        if machine is None or self._gone(machine, call):
            raise Refused(404, "machine not found")
        if call.operation in _MUTATIONS:
            machine.check_nonce(call.now, call.nonce)
        return machine

    def _gone(self, machine: FakeMachine, call: Call) -> bool:
        if machine.destroyed_at is None:
            return False
        expired = call.now >= machine.destroyed_at + self.latencies.tombstone
        # A destroyed machine answers GET (and wait) for a while, then 404s.
        return expired or call.operation not in ("Machines_show", "Machines_wait")

    def _render(self, machine: FakeMachine, now: float) -> dict[str, Any]:
        return {
            "id": machine.id,
            "name": machine.name,
            "state": machine.state,
            "region": machine.region,
            "instance_id": machine.version,
            "version": machine.version,
            "private_ip": machine.private_ip,
            "config": machine.config,
            "created_at": _iso(machine.created_at),
            "updated_at": _iso(now),
            "events": [],
            "checks": [],
            "host_status": "ok",
        }

    # -- machines ----------------------------------------------------------------------------

    async def _create(self, call: Call, _: FakeMachine | None) -> Response:
        body = call.body if isinstance(call.body, dict) else {}
        config = body.get("config") or {}
        if not config.get("image"):
            raise Refused(400, "invalid config: image is required")
        region = body.get("region") or self.regions[0]
        if region not in self.regions:
            raise Refused(400, f"invalid region {region!r}")
        if region in self.exhausted:
            fault = self.exhausted[region]
            raise Refused(fault.status, fault.error, fault.fly_status)
        machine_id = secrets.token_hex(7)
        name = body.get("name") or f"{self.app_name}-{machine_id}"
        if any(m.name == name for m in self.live()):
            raise Refused(409, f"already_exists: a machine named {name} exists")
        machine = FakeMachine(
            machine_id, name, region, config, call.now, call.now + self.list_lag, self.latencies
        )
        self.machines[machine_id] = machine
        if body.get("lease_ttl"):
            machine.acquire_lease(call.now, None, body["lease_ttl"], call.owner, "create")
        if not body.get("skip_launch"):
            machine.launch(call.now)
        rendered = self._render(machine, call.now)
        if machine.lease is not None:
            rendered["nonce"] = machine.lease.nonce
        return JSONResponse(rendered)

    async def _show(self, call: Call, machine: FakeMachine | None) -> Response:
        return JSONResponse(self._render(_some(machine), call.now))

    async def _list(self, call: Call, _: FakeMachine | None) -> Response:
        for machine in self.machines.values():
            machine.settle(call.now)
        page, headers = list_page(
            self.machines.values(), call.request.query_params, call.now, self.short_pages
        )
        return JSONResponse([self._render(m, call.now) for m in page], headers=headers)

    async def _update(self, call: Call, machine: FakeMachine | None) -> Response:
        machine = _some(machine)
        body = call.body if isinstance(call.body, dict) else {}
        expected = body.get("current_version")
        if expected and expected != machine.version:
            raise Refused(409, f"current_version {expected} is stale, machine is {machine.version}")
        if not isinstance(body.get("config"), dict) or not body["config"].get("image"):
            raise Refused(400, "invalid config: image is required")
        machine.update(call.now, body["config"], bool(body.get("skip_launch")))
        return JSONResponse(self._render(machine, call.now))

    async def _delete(self, call: Call, machine: FakeMachine | None) -> Response:
        query = call.request.query_params
        force = "true" in (query.get("force"), query.get("kill"))  # fly-go sends kill=true
        _some(machine).destroy(call.now, force)
        return JSONResponse({"ok": True})

    async def _start(self, call: Call, machine: FakeMachine | None) -> Response:
        previous = _some(machine).start(call.now)
        return JSONResponse({"previous_state": previous, "migrated": False, "new_host": ""})

    async def _stop(self, call: Call, machine: FakeMachine | None) -> Response:
        _some(machine).stop(call.now)
        return JSONResponse({"ok": True})

    async def _suspend(self, call: Call, machine: FakeMachine | None) -> Response:
        _some(machine).suspend(call.now)
        return JSONResponse({"ok": True})

    async def _wait(self, call: Call, machine: FakeMachine | None) -> Response:
        machine = _some(machine)
        query = call.request.query_params
        wanted = {s for v in query.getlist("state") for s in v.split(",") if s} or {"started"}
        timeout = as_int(query.get("timeout"))
        timeout = MAX_WAIT if timeout is None else timeout
        if timeout > MAX_WAIT:
            raise Refused(400, f"invalid_argument: timeout {timeout}s is above {MAX_WAIT}s")
        deadline = call.now + max(timeout, 1)
        while True:
            now = self.clock.now()
            machine.settle(now)
            if machine.state in wanted or ("settled" in wanted and machine.state in PERSISTENT):
                body = {"ok": True, "state": machine.state, "version": machine.version}
                return JSONResponse({**body, "event_id": secrets.token_hex(13)})
            if now >= deadline:
                return _error(
                    408,
                    f"machine failed to reach desired state, {','.join(sorted(wanted))}, "
                    f"currently {machine.state}",
                )
            change = machine.next_change()
            await self.clock.sleep(min(change or deadline, deadline) - now)

    async def _exec(self, call: Call, machine: FakeMachine | None) -> Response:
        machine = _some(machine)
        if machine.state != "started":
            raise Refused(412, f"unable to exec in machine from current state: '{machine.state}'")
        exit_code, stdout, stderr = self.exec_results.get(machine.id, (0, "", ""))
        return JSONResponse({"exit_code": exit_code, "stdout": stdout, "stderr": stderr})

    # -- leases ------------------------------------------------------------------------------

    async def _lease_create(self, call: Call, machine: FakeMachine | None) -> Response:
        machine = _some(machine)
        body = call.body if isinstance(call.body, dict) else {}
        ttl = body.get("ttl") or as_int(call.request.query_params.get("ttl")) or 30
        description = str(body.get("description", ""))
        machine.acquire_lease(call.now, call.nonce, ttl, call.owner, description)
        return JSONResponse({"status": "success", "data": self._lease(machine)}, status_code=201)

    async def _lease_show(self, call: Call, machine: FakeMachine | None) -> Response:
        machine = _some(machine)
        if machine.active_lease(call.now) is None:
            raise Refused(404, "lease not found")
        return JSONResponse({"status": "success", "data": self._lease(machine)})

    async def _lease_release(self, call: Call, machine: FakeMachine | None) -> Response:
        _some(machine).release_lease(call.now, call.nonce or "")
        return JSONResponse({"status": "success"})

    def _lease(self, machine: FakeMachine) -> dict[str, Any]:
        lease = machine.lease
        assert lease is not None
        return {
            "nonce": lease.nonce,
            "expires_at": int(WALL_EPOCH + lease.expires_at),
            "owner": lease.owner,
            "description": lease.description,
            "version": machine.version,
        }


def _some(machine: FakeMachine | None) -> FakeMachine:
    assert machine is not None, "a machine route without a machine"
    return machine


def _error(
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    fly_status: str | None = None,
) -> Response:
    body: dict[str, Any] = {"error": message}
    if fly_status is not None:
        body["status"] = fly_status
    return JSONResponse(body, status_code=status, headers=headers)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _iso(virtual: float) -> str:
    return datetime.fromtimestamp(WALL_EPOCH + virtual, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
