"""redis-py types every command as `Awaitable[X] | X`: one signature serves its sync and its
async client. The package narrows an async reply with `pool.store.redis_errors.resolved`;
`sync_reply` narrows a reply of the sync client the tests use to look at Redis from outside."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


def sync_reply(reply: Awaitable[T] | T) -> T:
    if inspect.isawaitable(reply):
        raise TypeError("an async client's reply: await it through resolved()")
    return reply
