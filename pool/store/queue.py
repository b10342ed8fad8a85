"""Enqueueing the pool's arq jobs: names and job ids in one place.

Job ids make duplicates collapse while a job is queued: one resize per pool, one recycle per
(machine, epoch), one boot or wake per session, one rolling guest resize per pool. The jobs
themselves live in workers/. Redis errors leave as PoolUnavailable, as everywhere in the pool.
"""

from __future__ import annotations

import uuid
from typing import Any

from arq.connections import ArqRedis

from pool.store.redis_errors import translated_redis_errors

RESIZE_JOB = "resize"
RECYCLE_JOB = "recycle"
BOOT_SESSION_JOB = "boot_session"
HYDRATE_JOB = "hydrate_machine"
WAKE_JOB = "wake_machine"
RESIZE_GUEST_JOB = "resize_guest"


class JobQueue:
    def __init__(self, arq: ArqRedis) -> None:
        self._arq = arq

    async def _enqueue(self, job: str, *args: Any, job_id: str) -> None:
        async with translated_redis_errors():
            await self._arq.enqueue_job(job, *args, _job_id=job_id)

    async def resize(self, template: str, region: str) -> None:
        await self._enqueue(RESIZE_JOB, template, region, job_id=f"resize:{template}:{region}")

    async def recycle(self, machine_id: str, epoch: int) -> None:
        await self._enqueue(RECYCLE_JOB, machine_id, epoch, job_id=f"recycle:{machine_id}:{epoch}")

    async def hydrate_machine(self, session_id: str, machine_id: str) -> None:
        await self._enqueue(
            HYDRATE_JOB, session_id, machine_id, job_id=f"hydrate:{session_id}:{machine_id}"
        )

    async def boot_session(self, session_id: uuid.UUID) -> None:
        await self._enqueue(BOOT_SESSION_JOB, str(session_id), job_id=f"boot:{session_id}")

    async def wake_machine(self, session_id: uuid.UUID, machine_id: str, epoch: int) -> None:
        await self._enqueue(
            WAKE_JOB, str(session_id), machine_id, epoch, job_id=f"wake:{session_id}"
        )

    async def resize_guest(self, template: str, region: str) -> None:
        await self._enqueue(
            RESIZE_GUEST_JOB, template, region, job_id=f"resize-guest:{template}:{region}"
        )
