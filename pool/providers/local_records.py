"""On-disk records of local machines, shared by every process that uses the same base directory.

    base_dir/machines/{id}/machine.json   the record, replaced atomically (tmp + os.replace)
    base_dir/machines/{id}/machine.log    the machine's stdout and stderr
    base_dir/machines/{id}/workspace/     the files the machine serves

Writers hold an exclusive flock on the machine directory, so a start racing a stop from
another process (or another coroutine: each `machine_lock` opens its own descriptor, and flock
treats descriptors independently) cannot spawn two processes for one machine. Readers take no
lock: os.replace means they see the old record or the new one, never half of one.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pool.core.errors import MachineNotFound, ProviderError
from pool.core.provider import MachineState

logger = logging.getLogger(__name__)

RECORD_NAME = "machine.json"
LOCK_POLL_SECONDS = 0.02


@dataclass
class LocalMachineFile:
    """What a local machine's `machine.json` holds: the provider's own view of its process
    (the pool's view of a machine is pool.store.inventory.MachineRecord, in Redis)."""

    id: str
    template: str
    region: str
    state: MachineState
    created_at: float
    port: int | None = None
    pid: int | None = None
    pgid: int | None = None
    # When the current process was spawned: how long a STARTING machine has been booting.
    started_at: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LocalMachineFile:
        raw: dict[str, Any] = json.loads(text)
        raw["state"] = MachineState(raw["state"])
        return cls(**raw)


class MachineStore:
    """Where the machines of one base directory live on disk."""

    def __init__(self, base_dir: Path) -> None:
        self.root = base_dir / "machines"

    def machine_dir(self, machine_id: str) -> Path:
        return self.root / machine_id

    def workspace(self, machine_id: str) -> Path:
        return self.machine_dir(machine_id) / "workspace"

    def log_path(self, machine_id: str) -> Path:
        return self.machine_dir(machine_id) / "machine.log"

    def make_dirs(self, machine_id: str) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            # exist_ok=False: a colliding id must fail, not share another machine's record.
            self.machine_dir(machine_id).mkdir()
            self.workspace(machine_id).mkdir()
        except OSError as exc:
            raise ProviderError(f"could not create machine {machine_id}: {exc}") from exc

    def wipe_workspace(self, machine_id: str) -> None:
        # Errors are not ignored: files of the last session must not survive into the next.
        workspace = self.workspace(machine_id)
        try:
            if workspace.exists():
                shutil.rmtree(workspace)
            workspace.mkdir()
        except OSError as exc:
            raise ProviderError(f"could not wipe machine {machine_id}: {exc}") from exc

    def read(self, machine_id: str) -> LocalMachineFile:
        path = self.machine_dir(machine_id) / RECORD_NAME
        try:
            return LocalMachineFile.from_json(path.read_text())
        except FileNotFoundError as exc:
            raise MachineNotFound(machine_id) from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderError(f"unreadable record for machine {machine_id}: {exc}") from exc

    def write(self, record: LocalMachineFile) -> None:
        directory = self.machine_dir(record.id)
        # A writer-unique temporary name, so two writers never interleave in one file.
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".machine.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as tmp_file:
                tmp_file.write(record.to_json())
            os.replace(tmp, directory / RECORD_NAME)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def ids(self) -> list[str]:
        try:
            names = sorted(entry.name for entry in self.root.iterdir() if entry.is_dir())
        except FileNotFoundError:
            return []
        return [name for name in names if not name.startswith(".")]

    def records(self, exclude: str | None = None) -> list[LocalMachineFile]:
        """Every readable record; machines being created or destroyed right now are skipped."""
        found = []
        for machine_id in self.ids():
            if machine_id == exclude:
                continue
            try:
                found.append(self.read(machine_id))
            except MachineNotFound:
                continue
            except ProviderError:
                logger.warning("skipping machine %s: unreadable record", machine_id)
        return found

    def log_tail(self, machine_id: str, size: int = 600) -> str:
        try:
            with self.log_path(machine_id).open("rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - size))
                return log.read().decode(errors="replace").strip() or "(empty log)"
        except OSError:
            return "(no log)"

    def remove(self, machine_id: str) -> None:
        # Rename first, so other processes stop seeing the machine at once rather than partway
        # through a slow rmtree.
        trash = self.root / f".trash-{machine_id}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(self.machine_dir(machine_id), trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    @contextlib.asynccontextmanager
    async def machine_lock(self, machine_id: str, timeout: float) -> AsyncIterator[None]:
        """Hold the machine's cross-process lock; MachineNotFound if the machine is gone."""
        try:
            fd = os.open(self.machine_dir(machine_id), os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError as exc:
            raise MachineNotFound(machine_id) from exc
        try:
            await _acquire_flock(fd, machine_id, timeout)
            yield
        finally:
            # Closing the descriptor releases the flock.
            os.close(fd)


async def _acquire_flock(fd: int, machine_id: str, timeout: float) -> None:
    # Non-blocking attempts with an asyncio sleep between them: a blocking flock would stall
    # the event loop, or a thread that cannot be cancelled.
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise ProviderError(f"machine {machine_id} stayed locked for {timeout}s") from None
            await asyncio.sleep(LOCK_POLL_SECONDS)
