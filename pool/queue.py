"""Enqueueing the pool's arq jobs: names and job ids in one place.

Job ids make duplicates collapse while a job is queued: one resize per pool, one recycle per
(machine, epoch), one boot or wake per session, one rolling guest resize per pool. The jobs
themselves live in workers/.
"""

from __future__ import annotations

import uuid

from arq.connections import ArqRedis

RESIZE_JOB = "resize"
RECYCLE_JOB = "recycle"
BOOT_SESSION_JOB = "boot_session"
HYDRATE_JOB = "hydrate_machine"
WAKE_JOB = "wake_machine"
RESIZE_GUEST_JOB = "resize_guest"


class JobQueue:
    def __init__(self, arq: ArqRedis) -> None:
        self._arq = arq

    async def resize(self, template: str, region: str) -> None:
        await self._arq.enqueue_job(
            RESIZE_JOB, template, region, _job_id=f"resize:{template}:{region}"
        )

    async def recycle(self, machine_id: str, epoch: int) -> None:
        await self._arq.enqueue_job(
            RECYCLE_JOB, machine_id, epoch, _job_id=f"recycle:{machine_id}:{epoch}"
        )

    async def hydrate_machine(self, session_id: str, machine_id: str) -> None:
        await self._arq.enqueue_job(
            HYDRATE_JOB, session_id, machine_id, _job_id=f"hydrate:{session_id}:{machine_id}"
        )

    async def boot_session(self, session_id: uuid.UUID) -> None:
        await self._arq.enqueue_job(BOOT_SESSION_JOB, str(session_id), _job_id=f"boot:{session_id}")

    async def wake_machine(self, session_id: uuid.UUID, machine_id: str, epoch: int) -> None:
        await self._arq.enqueue_job(
            WAKE_JOB, str(session_id), machine_id, epoch, _job_id=f"wake:{session_id}"
        )

    async def resize_guest(self, template: str, region: str) -> None:
        await self._arq.enqueue_job(
            RESIZE_GUEST_JOB, template, region, _job_id=f"resize-guest:{template}:{region}"
        )
