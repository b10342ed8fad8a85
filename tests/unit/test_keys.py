from __future__ import annotations

import re
from fnmatch import fnmatchcase
from importlib import resources

from pool.core.states import TIERS
from pool.store.keys import Keys, pool_name

KEYS = Keys("t:")
POOL = pool_name("web", "fra")


def _every_key() -> dict[str, str]:
    return {
        "machine": KEYS.machine("x"),
        **{f"ready {tier}": KEYS.ready(POOL, tier) for tier in TIERS},
        "machines": KEYS.machines(POOL),
        "pools": KEYS.pools,
        "pending": KEYS.pending,
        "booting_sessions": KEYS.booting_sessions(POOL),
        "stats": KEYS.stats(POOL),
        "demand": KEYS.demand(POOL, 7),
        "create_backoff": KEYS.create_backoff(POOL),
        "pool_history": KEYS.pool_history,
        "user_sessions": KEYS.user_sessions("x"),
        "creation_rate": KEYS.creation_rate("x"),
        "edit_bytes": KEYS.edit_bytes("x"),
        "edits": KEYS.edits("x"),
        "snapshot": KEYS.snapshot("x"),
        "snapshot_meta": KEYS.snapshot_meta("x"),
        "lock": KEYS.lock("x"),
        "store_identity": KEYS.store_identity,
        "fly_rate": KEYS.fly_rate("x", "y"),
        "session_channel": KEYS.session_channel("x"),
        "machine_channel": KEYS.machine_channel("x"),
        "hub_channel": KEYS.hub_channel,
        "flags_channel": KEYS.flags_channel,
    }


def test_every_key_is_under_the_prefix_and_no_two_kinds_meet() -> None:
    keys = _every_key()
    assert all(key.startswith("t:") for key in keys.values())
    assert len(set(keys.values())) == len(keys)


def test_the_user_scan_finds_user_sets_only_and_names_their_user() -> None:
    matched = {
        kind for kind, key in _every_key().items() if fnmatchcase(key, KEYS.every_user_sessions)
    }
    assert matched == {"user_sessions"}
    assert KEYS.user_of(KEYS.user_sessions("5e1f")) == "5e1f"


def test_a_script_that_builds_keys_from_the_prefix_says_why() -> None:
    # Keys known before the call come in KEYS; a script builds one itself only when it is named
    # by something the script reads (a popped id, a field, the clock), and its header says so.
    for script in resources.files("pool.store").joinpath("lua").iterdir():
        text = script.read_text()
        builds = re.search(r"\bp \.\. ", text) is not None
        assert builds == ("-- The prefix:" in text), script.name
