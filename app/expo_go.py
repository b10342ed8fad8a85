"""Expo Go links of an `expo` session: the `exp://` URL its QR code shows, and the Appetize
embed that launches Expo Go on it in a cloud simulator.

Expo Go opens `exp://host/path` as `http://host/path` and `exps://…` as `https://…`, so the
link is the session's share URL with its scheme swapped; the preview origin exchanges its
token once for a device host (app.preview_proxy). Appetize launches a URL on a device that
starts when its `launchUrl` query parameter (URL-encoded) is on the app or embed URL
(docs.appetize.io/features/deep-links); the app is an Expo Go build the operator uploaded, one
per platform (an Appetize build is for one platform, so the key chooses it).
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from app.settings import Settings

EXPO_TEMPLATE = "expo"
_SCHEMES = {"http": "exp", "https": "exps"}


def expo_go_url(share_url: str) -> str:
    """`share_url` (http(s)://{session origin}/?token=…) as Expo Go opens it."""
    scheme, sep, rest = share_url.partition("://")
    if not sep or scheme not in _SCHEMES:
        raise ValueError(f"not an http(s) URL: {share_url[:40]!r}")
    return f"{_SCHEMES[scheme]}://{rest}"


def appetize_url(settings: Settings, device_type: str, launch_url: str) -> str | None:
    """The Appetize embed of the Expo Go build for the session's platform, launching
    `launch_url`; None when the operator uploaded none for it, or for a web session (no
    platform to simulate). `autoplay`: it starts running, as the Appetize arm's embed does."""
    keys = {
        "ios": settings.preview_appetize_expo_go_ios_key,
        "android": settings.preview_appetize_expo_go_android_key,
    }
    key = keys.get(device_type)
    if key is None:
        return None
    query = urlencode({"launchUrl": launch_url, "autoplay": "true"})
    return f"{settings.preview_appetize_embed_url}{quote(key, safe='')}?{query}"
