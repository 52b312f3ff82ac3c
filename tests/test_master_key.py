"""One master key, one comparison: the chat route (raw ASGI) and Quart's routes agree.

The review (finding 13) found a non-ASCII key accepted on
``/v1/chat/completions`` and refused on ``/v1/models``: Quart decodes
headers as latin-1, and the key was compared with that text re-encoded as
UTF-8. Clients send the key's UTF-8 bytes; both routes now compare those.
"""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import gateway_config, run_gateway

KEY = "sk-clé-ключ-✓"
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def bearer(key: bytes) -> dict[str, bytes]:
    return {"authorization": b"Bearer " + key}


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (bearer(KEY.encode()), 200),
        ({}, 401),
        (bearer(KEY.encode("latin-1", "replace")), 401),
        (bearer(KEY.encode()[:-1]), 401),
        (bearer(KEY.encode() + b"x"), 401),
    ],
    ids=["utf8-key", "none", "latin1-lookalike", "truncated", "extended"],
)
async def test_a_non_ascii_master_key_is_checked_alike_on_every_route(
    authorization: dict[str, bytes], status: int
) -> None:
    config = gateway_config(
        [{"model_name": "m", "litellm_params": {"model": "openai/x", "mock_response": "hi"}}],
        general_settings={"master_key": KEY},
    )
    async with run_gateway(config) as base, httpx.AsyncClient(base_url=base) as http:
        answers = [
            await http.post("/v1/chat/completions", json=CHAT, headers=authorization),
            await http.get("/v1/models", headers=authorization),
            await http.get("/v1/models/m", headers=authorization),
        ]
        assert [a.status_code for a in answers] == [status] * 3
        if status == 401:
            for answer in answers:
                assert answer.json()["error"]["type"] == "authentication_error"
                assert KEY not in answer.text
        else:
            assert answers[1].json()["data"][0]["id"] == "m"
