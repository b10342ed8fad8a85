"""Errors of the sandbox agent, one hierarchy:

    AgentError
     ├── FrameError        a frame from the orchestrator is malformed; it is logged and dropped
     ├── PatchRejected     a hydrate or patch refused before anything was written (code, message)
     ├── TemplateMissing   the template, or its installed node_modules, is not on disk
     └── DependencyFailed  package.json's dependencies could not be installed (sandbox.agent.deps):
                           reported as a `buildError` on package.json; the patch is still written

OSError from the filesystem is not wrapped: a failed write after validation is an environment
fault (disk full), reported as the machine's status rather than as a refusal of the patch.
"""

from __future__ import annotations


class AgentError(Exception):
    pass


class FrameError(AgentError):
    pass


class PatchRejected(AgentError):
    """The change set was refused as a whole: nothing of it was written."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TemplateMissing(AgentError):
    pass


class DependencyFailed(AgentError):
    """What a `buildError` on package.json says: why, and where (1-based; 0 when unknown)."""

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
