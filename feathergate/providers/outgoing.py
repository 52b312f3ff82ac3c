"""The one way an adapter builds its upstream request: headers merged, JSON encoded.

Every adapter sends JSON with a content type, its own headers, the key in the
header its API wants, and the deployment's ``extra_headers``, which win over
all of these without duplicating any (names are compared lower-cased).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from feathergate.clientjson import dumps
from feathergate.config import Deployment
from feathergate.providers.base import UpstreamRequest

__all__ = ["json_request", "request_headers"]


def json_request(
    url: str,
    payload: Any,
    *,
    source: Mapping[str, Any],
    deployment: Deployment,
    headers: Mapping[str, str],
    ascii: bool = False,
    pieces: bool = False,
) -> UpstreamRequest:
    """``payload`` (translated from the client body ``source``) as a POST to ``url``.

    ``headers`` are lower-case names, the API key among them when it is set.
    ``ascii`` and ``pieces``: see :func:`feathergate.clientjson.dumps`; the
    OpenAI passthrough leaves a lone surrogate to the upstream to judge.
    """
    content = dumps(payload, source, ascii=ascii, pieces=pieces)
    return UpstreamRequest(url, request_headers(deployment, headers), content)


def request_headers(deployment: Deployment, headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """A JSON POST's headers: ``headers``, then the deployment's ``extra_headers``.

    The deployment's word wins, without duplicates (names are lower-cased).
    """
    merged = {"content-type": "application/json", **headers}
    for name, value in deployment.extra_headers:
        merged[name.lower()] = value
    return list(merged.items())
