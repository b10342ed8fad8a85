"""Session tokens: short-lived, HMAC-signed, bound to one session.

The editor presents one on the session's WebSocket and the preview origin; they carry no user
data, only what they grant. Format: base64url(session_id:expiry) "." base64url(hmac-sha256).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid


class InvalidSessionToken(ValueError):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint_session_token(secret: bytes, session_id: uuid.UUID, expires_at: int) -> str:
    payload = f"{session_id}:{expires_at}".encode()
    signature = hmac.new(secret, payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(signature)}"


def verify_session_token(secret: bytes, token: str, session_id: uuid.UUID, now: float) -> None:
    """Raise InvalidSessionToken unless `token` grants `session_id` at time `now`."""
    if len(token) > 512 or token.count(".") != 1:
        raise InvalidSessionToken("malformed")
    payload_text, signature_text = token.split(".")
    try:
        payload, signature = _unb64(payload_text), _unb64(signature_text)
    except ValueError:
        raise InvalidSessionToken("malformed") from None
    expected = hmac.new(secret, payload, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise InvalidSessionToken("bad signature")
    token_session, _, expiry = payload.decode(errors="replace").partition(":")
    if token_session != str(session_id):
        raise InvalidSessionToken("another session's token")
    if not expiry.isdigit() or int(expiry) < now:
        raise InvalidSessionToken("expired")
