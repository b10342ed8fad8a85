"""The Appetize embed of a project: its URL, from the project's migrated Appetize settings.

Appetize documents the embed as an iframe on `https://appetize.io/embed/{publicKey}` (the
public key is now called the build id) taking the same query parameters as its app links:
`device`, `osVersion`, `scale` (10 to 100, or `auto`), `autoplay` and others
(docs.appetize.io/platform/embedding-apps, docs.appetize.io/platform/query-params-reference).
`xdocMsg=true` turns on its cross-document messages, which the panel listens to for the first
frame (docs.appetize.io/deprecated/cross-document-messages). The panel builds the same URL
(app/ui/client/src/appetize.ts); the base is PREVIEW_APPETIZE_EMBED_URL, so tests can point it
at a local stand-in with the same path shape.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from sql.appetize import AppetizeSettings


def embed_query(settings: AppetizeSettings) -> dict[str, str]:
    """The embed's query parameters: what the project set, then what the panel needs."""
    query = {
        name: value
        for name, value in (
            ("device", settings.device),
            ("osVersion", settings.os_version),
            ("scale", settings.scale),
        )
        if value
    }
    # The fallback replaces a preview that starts by itself: so does the embed.
    query["autoplay"] = "true"
    query["xdocMsg"] = "true"
    return query


def embed_url(base: str, settings: AppetizeSettings) -> str:
    """`base` ends with a slash (PREVIEW_APPETIZE_EMBED_URL); the key is one path segment."""
    return f"{base}{quote(settings.public_key, safe='')}?{urlencode(embed_query(settings))}"
