"""The operator report's arithmetic over machine records. fakeredis is enough here: no Lua,
streams or pub/sub are involved, only hashes and sets read back."""

from __future__ import annotations

import fakeredis
import pytest

from pool.services.pool_status import pool_report
from pool.store.inventory import Inventory, PoolKey
from pool.store.redis_errors import resolved


@pytest.fixture
async def inventory() -> Inventory:
    client = fakeredis.FakeAsyncRedis(decode_responses=True)
    pool = PoolKey("react-web", "local")
    states = {"m1": "ready", "m2": "ready", "m3": "leased", "m4": "booting", "m5": "recycling"}
    for machine_id, state in states.items():
        await resolved(
            client.hset(
                f"po:m:{machine_id}",
                mapping={"state": state, "template": "react-web", "region": "local"},
            )
        )
        await resolved(client.sadd(f"po:machines:{pool}", machine_id))
    await resolved(client.sadd("po:pools", str(pool)))
    await resolved(client.hset(f"po:stats:{pool}", mapping={"hits": 3, "misses": 1}))
    return Inventory(client)


async def test_counts_bounds_and_hit_ratio(inventory: Inventory) -> None:
    report = await pool_report(
        inventory,
        targets={PoolKey("react-web", "local"): (1, 4)},
        default_bounds=(2, 10),
        defaults=[PoolKey("react-native-web", "local")],
    )
    by_template = {row["template"]: row for row in report}
    web = by_template["react-web"]
    assert (web["ready"], web["leased"], web["booting"], web["recycling"]) == (2, 1, 1, 1)
    assert (web["min"], web["max"], web["operatorSet"]) == (1, 4, True)
    assert web["hitRatio"] == 0.75
    native = by_template["react-native-web"]
    assert (native["ready"], native["min"], native["max"], native["hitRatio"]) == (0, 2, 10, None)
    assert native["operatorSet"] is False


@pytest.mark.parametrize("text", ["react-web:local", "a:b", "x:"])
def test_pool_key_round_trips(text: str) -> None:
    assert str(PoolKey.parse(text)) == text
