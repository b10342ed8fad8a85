"""Structured JSON logs carrying request_id, session_id and machine_id from context variables.

Set the variables where the work starts (a request, a job); every log line below picks them up
without passing them around.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
session_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("session_id", default=None)
machine_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("machine_id", default=None)

_CONTEXT = {"request_id": request_id, "session_id": session_id, "machine_id": machine_id}


# Credentials travel in query strings (the editor socket's and the preview's `?token=`), in
# Authorization headers and as bare JWTs; none of them may reach a log line, whoever logs it
# (uvicorn logs every WebSocket's path with its query string).
_QUERY = re.compile(r"(?<=[\w/.%-])\?[^\s\"'<>]+")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[\w.~+/=-]+")
_JWT = re.compile(r"\beyJ[\w-]*\.[\w-]+\.[\w-]*")


def redact(text: str) -> str:
    """`text` without query strings, bearer tokens or JWTs."""
    text = _QUERY.sub("?[redacted]", text)
    text = _BEARER.sub(r"\1 [redacted]", text)
    return _JWT.sub("[redacted-jwt]", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": round(time.time(), 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for name, var in _CONTEXT.items():
            value = var.get()
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log duplicates what our own request log says.
    logging.getLogger("uvicorn.access").disabled = True
    # One line per health probe of every machine drowns everything else.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # psycopg_pool warns at every reconnect attempt of every connection during an outage; the
    # worker says it once (workers.outage) and the API answers 503s.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
