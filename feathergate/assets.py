"""Downloading images for providers that only take inline data (Gemini).

The relay calls :func:`fetch_assets` inside its own deadline; this module adds
the per-image size cap and turns every failure into a 400 that names the URL.
"""

from __future__ import annotations

import httpx

from feathergate.errors import InvalidRequest
from feathergate.providers.base import Asset

__all__ = ["MAX_ASSET_BYTES", "fetch_assets"]

MAX_ASSET_BYTES = 20 * 1024 * 1024


async def _fetch(client: httpx.AsyncClient, url: str, connect_timeout: float) -> Asset:
    def fail(why: str) -> InvalidRequest:
        return InvalidRequest(f"could not fetch image {url[:200]}: {why}", param="messages")

    try:
        timeout = httpx.Timeout(None, connect=connect_timeout)
        async with client.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
            if response.status_code != 200:
                raise fail(f"HTTP {response.status_code}")
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > MAX_ASSET_BYTES:
                raise fail(f"larger than {MAX_ASSET_BYTES} bytes")
            data = bytearray()
            async for piece in response.aiter_bytes():
                data += piece
                if len(data) > MAX_ASSET_BYTES:
                    raise fail(f"larger than {MAX_ASSET_BYTES} bytes")
            mime = response.headers.get("content-type", "").split(";")[0].strip()
    except httpx.HTTPError as exc:
        raise fail(type(exc).__name__) from None
    if not mime.startswith(("image/", "application/pdf", "audio/")):
        raise fail(f"unsupported content type {mime or 'unknown'!r}")
    return Asset(mime, bytes(data))


async def fetch_assets(
    client: httpx.AsyncClient, urls: list[str], connect_timeout: float
) -> dict[str, Asset]:
    assets: dict[str, Asset] = {}
    for url in dict.fromkeys(urls):
        assets[url] = await _fetch(client, url, connect_timeout)
    return assets
