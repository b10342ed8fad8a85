"""Every Redis key and channel the pool uses, under one prefix (`po:` by default).

    m:{machine}                  hash: state, epoch, template, region, address, session, user,
                                 tier (hot | suspended | stopped), token_sha256, taken_at (when
                                 it left service: moving, draining, recycling), agent (its agent
                                 was connected when it became ready), agent_lost_at, ...
    ready:{template}:{region}    list of ready hot machine ids; LPUSH new, RPOP to lease (FIFO)
    ready-suspended:{t}:{r}      the same for the suspended tier
    ready-stopped:{t}:{r}        the same for the stopped tier
    machines:{template}:{region} set of every machine id the pool knows for that pool
    pools                        set of "{template}:{region}" seen
    pending                      zset machine id -> pending deadline (ms): leases not yet committed
    user:{user}                  set of the user's live session ids (the concurrent-session gate)
    rate:{user}                  GCRA theoretical arrival time (ms) for session creation
    booting-sessions:{t}:{r}     zset session id -> start (ms): on-demand boots in flight
    stats:{t}:{r}                hash: hits (any tier), hits_suspended, hits_stopped, misses
    demand:{t}:{r}:{bucket}      counter of lease attempts per 10 s bucket (expires after 15 min)
    create-backoff:{t}:{r}       hash: failures, retry_at, error (a pool whose creates keep failing)
    pool-history                 zset sample -> its time (s): every pool's counts, sampled for the
                                 dashboard, trimmed to the last hour (pool.store.pool_history)
    lock:{name}                  a lock over all workers (a pool's resize, reconcile)
    store-id                     present while Redis keeps its data (pool.store.store_identity)
    fly-rate:{action}:{scope}    GCRA theoretical arrival time (µs) of the next Fly API call
    alerts:proc:{process}        JSON: a process's counters and heartbeat for the alert evaluator
                                 (expires), its id in the set alerts:procs
    alerts:history               list of JSON figures the evaluator saw (its windows), oldest first
    alerts:state                 hash alert instance -> JSON state (pending or firing)
    alerts:outbox                list of JSON webhook messages not yet delivered, oldest first
    alerts:recent                list of JSON resolved alerts, newest first (bounded)
    edits:{session}              stream of patches, entry id = "{seq}-0", bounded (MAXLEN ~)
    snap:{session}               hash path -> content: every file at the stream's head
    snapmeta:{session}           hash: head (seq), bytes, epoch, user; applied (seq the machine
                                 acked), status; ended once the session's end was announced
    editbytes:{user}             hash session -> bytes its edits hold (the user's edit budget)

    ch:session:{session}         pub/sub channel: patches, applied, status, logs of a session
    ch:machine:{machine}         pub/sub channel: assign and hydrate for a machine's agent
    ch:hub                       pub/sub channel nobody publishes on (keeps a gateway subscribed)
    ch:flags                     pub/sub channel: the rollout flags changed (app/rollout/flag_cache)

The Lua scripts (pool/store/lua/) take the keys they touch as KEYS, named here. A few keys are
known only inside a script, named by what it reads there (a popped machine id, a field of the
record, Redis' clock): those scripts also take the prefix and build them with the same shapes,
and say so. Channels are not keys (Redis Cluster does not place them in slots): scripts take
them whole in ARGV.
"""

from __future__ import annotations

from dataclasses import dataclass

from pool.core.states import TIERS, Tier

DEFAULT_PREFIX = "po:"

_READY_LISTS = {
    Tier.HOT: "ready:",
    Tier.SUSPENDED: "ready-suspended:",
    Tier.STOPPED: "ready-stopped:",
}


def pool_name(template: str, region: str) -> str:
    """A pool's name in keys and in the `pools` set (str of a PoolKey)."""
    return f"{template}:{region}"


@dataclass(frozen=True)
class Keys:
    prefix: str = DEFAULT_PREFIX

    # Machines and pools. `pool` is a pool_name (str of a PoolKey).

    def machine(self, machine_id: str) -> str:
        return f"{self.prefix}m:{machine_id}"

    def ready(self, pool: str, tier: Tier = Tier.HOT) -> str:
        return f"{self.prefix}{_READY_LISTS[tier]}{pool}"

    def ready_lists(self, pool: str) -> list[str]:
        """Every tier's ready list, fastest first: the order a lease tries them."""
        return [self.ready(pool, tier) for tier in TIERS]

    def machines(self, pool: str) -> str:
        return f"{self.prefix}machines:{pool}"

    @property
    def pools(self) -> str:
        return f"{self.prefix}pools"

    @property
    def pending(self) -> str:
        return f"{self.prefix}pending"

    def booting_sessions(self, pool: str) -> str:
        return f"{self.prefix}booting-sessions:{pool}"

    def stats(self, pool: str) -> str:
        return f"{self.prefix}stats:{pool}"

    def demand(self, pool: str, bucket: int) -> str:
        return f"{self.prefix}demand:{pool}:{bucket}"

    def create_backoff(self, pool: str) -> str:
        return f"{self.prefix}create-backoff:{pool}"

    @property
    def pool_history(self) -> str:
        return f"{self.prefix}pool-history"

    # Users.

    def user_sessions(self, user_id: str) -> str:
        return f"{self.prefix}user:{user_id}"

    @property
    def every_user_sessions(self) -> str:
        """The SCAN pattern matching every user's session set."""
        return f"{self.prefix}user:*"

    def user_of(self, user_sessions_key: str) -> str:
        """The user id a `user_sessions` key names."""
        return user_sessions_key.removeprefix(f"{self.prefix}user:")

    def creation_rate(self, user_id: str) -> str:
        return f"{self.prefix}rate:{user_id}"

    def edit_bytes(self, user_id: str) -> str:
        return f"{self.prefix}editbytes:{user_id}"

    # A session's edit log.

    def edits(self, session_id: str) -> str:
        return f"{self.prefix}edits:{session_id}"

    def snapshot(self, session_id: str) -> str:
        return f"{self.prefix}snap:{session_id}"

    def snapshot_meta(self, session_id: str) -> str:
        return f"{self.prefix}snapmeta:{session_id}"

    # Workers and the Fly API.

    def lock(self, name: str) -> str:
        return f"{self.prefix}lock:{name}"

    @property
    def store_identity(self) -> str:
        return f"{self.prefix}store-id"

    def fly_rate(self, action: str, scope: str) -> str:
        return f"{self.prefix}fly-rate:{action}:{scope}"

    # The in-process alert evaluator (pool.services.alerts).

    def alert_process(self, process_id: str) -> str:
        return f"{self.prefix}alerts:proc:{process_id}"

    def alerts(self, name: str) -> str:
        """`procs`, `history`, `state`, `outbox` or `recent`."""
        return f"{self.prefix}alerts:{name}"

    # Pub/sub channels.

    def session_channel(self, session_id: str) -> str:
        return f"{self.prefix}ch:session:{session_id}"

    def machine_channel(self, machine_id: str) -> str:
        return f"{self.prefix}ch:machine:{machine_id}"

    @property
    def hub_channel(self) -> str:
        return f"{self.prefix}ch:hub"

    @property
    def flags_channel(self) -> str:
        return f"{self.prefix}ch:flags"
