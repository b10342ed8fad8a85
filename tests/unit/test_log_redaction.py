"""No credential reaches a log line (pool/core/logs.py), whoever logs it."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from pool.core.logs import JsonFormatter, redact

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLWJ5dGVz"


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        # uvicorn's own WebSocket line, as it logs it.
        (
            '127.0.0.1:5555 - "WebSocket /api/preview/sessions/a/ws?token=s3cr3t.x" [accepted]',
            "s3cr3t",
        ),
        ("GET /__preview/token?token=abc.def&next=/x HTTP/1.1", "abc.def"),
        ("redirect to http://x.preview.localhost/__preview/token?token=tok123", "tok123"),
        ("Authorization: Bearer opaque-token_value.123", "opaque-token_value"),
        (f"could not verify {JWT}", JWT),
    ],
)
def test_credentials_are_redacted(line: str, secret: str) -> None:
    assert secret not in redact(line)


def test_ordinary_text_is_left_alone() -> None:
    line = "pool react-web/local: 2 ready, is that enough? yes"
    assert redact(line) == line


def test_the_formatter_redacts_messages_and_exceptions() -> None:
    try:
        raise ValueError(f"bad token {JWT}")
    except ValueError:
        record = logging.LogRecord(
            "uvicorn.error", logging.INFO, __file__, 1, '"WebSocket /ws?token=%s" [accepted]',
            ("hunter2",), exc_info=sys.exc_info(),
        )  # fmt: skip
    entry = json.loads(JsonFormatter().format(record))
    assert "hunter2" not in entry["message"] and "?[redacted]" in entry["message"]
    assert JWT not in entry["exception"]
