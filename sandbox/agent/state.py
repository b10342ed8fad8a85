"""What the agent has applied, kept on disk so a restarted agent resumes where it stopped.

The file lives in the workspace's agent directory, so resetting a machine (wiping its
workspace) forgets it together with the files it describes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentState:
    session: str | None = None
    # The last seq whose patch was written (or refused: a refused patch consumes its seq).
    applied_seq: int = 0
    # The epoch of the session's edit log that applied_seq counts in (None: not told yet).
    epoch: str | None = None


class StateFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> AgentState:
        try:
            raw = json.loads(self.path.read_text())
            session, applied = raw["session"], raw["appliedSeq"]
            epoch = raw.get("epoch")
        except FileNotFoundError:
            return AgentState()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Starting from nothing is safe: the orchestrator answers with a full hydrate.
            logger.warning("unreadable state file %s (%s); starting from seq 0", self.path, exc)
            return AgentState()
        if (
            not (session is None or isinstance(session, str))
            or not isinstance(applied, int)
            or not (epoch is None or isinstance(epoch, str))
        ):
            logger.warning("state file %s has wrong types; starting from seq 0", self.path)
            return AgentState()
        return AgentState(session=session, applied_seq=applied, epoch=epoch)

    def save(self, state: AgentState) -> None:
        body = json.dumps(
            {"session": state.session, "appliedSeq": state.applied_seq, "epoch": state.epoch}
        )
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".state.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as tmp_file:
                tmp_file.write(body)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
