"""Session tokens: short-lived, HMAC-signed, bound to one session and one scope.

The editor presents one on the session's WebSocket and the preview origin; they carry no user
data, only what they grant. Format: base64url(session_id:expiry[:scope]) "." base64url(hmac).

Scopes, from most to least power:
- `editor` (no suffix): the session response's token. Opens the editor socket (it can change
  the session's files) and the preview origin.
- `preview`: the preview origin only (its cookie). What a share link is exchanged for.
- `share`: a short-lived link to open the preview on another device (a QR code to a phone, a
  new tab). Accepted only in the preview origin's first load, which swaps it for a `preview`
  cookie: whoever photographs the QR code can look at the preview, never edit the project.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import uuid
from dataclasses import dataclass


class InvalidSessionToken(ValueError):
    pass


class TokenScope(enum.StrEnum):
    EDITOR = "editor"
    PREVIEW = "preview"
    SHARE = "share"


@dataclass(frozen=True)
class Grant:
    """What a verified token grants: its scope, until `expires_at` (Unix seconds)."""

    scope: TokenScope
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint_session_token(
    secret: bytes,
    session_id: uuid.UUID,
    expires_at: int,
    scope: TokenScope = TokenScope.EDITOR,
) -> str:
    suffix = "" if scope is TokenScope.EDITOR else f":{scope.value}"
    payload = f"{session_id}:{expires_at}{suffix}".encode()
    signature = hmac.new(secret, payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(signature)}"


def verify_session_token(
    secret: bytes,
    token: str,
    session_id: uuid.UUID,
    now: float,
    scopes: frozenset[TokenScope] = frozenset({TokenScope.EDITOR}),
) -> Grant:
    """What the token grants; InvalidSessionToken unless `token` grants `session_id` at time `now`
    with one of `scopes`."""
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
    token_session, _, rest = payload.decode(errors="replace").partition(":")
    expiry, _, scope_text = rest.partition(":")
    if token_session != str(session_id):
        raise InvalidSessionToken("another session's token")
    if not expiry.isdigit() or int(expiry) < now:
        raise InvalidSessionToken("expired")
    try:
        scope = TokenScope(scope_text or TokenScope.EDITOR.value)
    except ValueError:
        raise InvalidSessionToken("unknown scope") from None
    if scope not in scopes:
        raise InvalidSessionToken(f"a {scope.value} token does not grant this")
    return Grant(scope, int(expiry))
