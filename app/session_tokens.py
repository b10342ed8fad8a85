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

Device credentials are another kind: the second half of a device host's first label,
`{session}--{credential}.{PREVIEW_DOMAIN}` (app.preview_proxy), for a client that keeps no
cookie (Expo Go fetches every URL of a manifest from the host named there). A device host
grants what a `preview` cookie grants, to whoever holds its name. The credential is what fits
one DNS label beside a session id (63 characters; lowercase letters and digits, since hosts
are case-insensitive): base32 of a 5-byte expiry and the first 10 bytes (80 bits) of an HMAC
whose message starts with DEVICE_HOST_PURPOSE, so that no session token's signature is ever
one (their messages start with the session id) and the other way round.
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


DEVICE_HOST_PURPOSE = "preview-device-host"
_DEVICE_EXPIRY_BYTES = 5
_DEVICE_MAC_BYTES = 10
# base32 of 15 bytes is 24 characters, no padding: with a session id and `--`, 62 of a
# label's 63.
DEVICE_CREDENTIAL_LENGTH = (_DEVICE_EXPIRY_BYTES + _DEVICE_MAC_BYTES) * 8 // 5
_BASE32_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz234567")


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


def _device_mac(secret: bytes, session_id: uuid.UUID, expiry: bytes) -> bytes:
    message = f"{DEVICE_HOST_PURPOSE}:{session_id}:".encode() + expiry
    return hmac.new(secret, message, hashlib.sha256).digest()[:_DEVICE_MAC_BYTES]


def mint_device_credential(secret: bytes, session_id: uuid.UUID, expires_at: int) -> str:
    """The credential of `session_id`'s device host until `expires_at` (Unix seconds)."""
    expiry = expires_at.to_bytes(_DEVICE_EXPIRY_BYTES, "big")
    raw = expiry + _device_mac(secret, session_id, expiry)
    return base64.b32encode(raw).decode().lower()


def verify_device_credential(
    secret: bytes, credential: str, session_id: uuid.UUID, now: float
) -> int:
    """When the credential expires; InvalidSessionToken unless it is `session_id`'s, valid at
    `now`. Only the canonical form (lowercase, as minted) is accepted: the router lowercases
    the host, so a phone that sends it in capitals still gets in."""
    if len(credential) != DEVICE_CREDENTIAL_LENGTH or not set(credential) <= _BASE32_LOWER:
        raise InvalidSessionToken("malformed")
    raw = base64.b32decode(credential.upper())
    expiry, mac = raw[:_DEVICE_EXPIRY_BYTES], raw[_DEVICE_EXPIRY_BYTES:]
    if not hmac.compare_digest(mac, _device_mac(secret, session_id, expiry)):
        raise InvalidSessionToken("bad signature, or another session's")
    expires_at = int.from_bytes(expiry, "big")
    if expires_at < now:
        raise InvalidSessionToken("expired")
    return expires_at
