"""One master key, one comparison: the chat route (raw ASGI) and Quart's routes agree.

The review (finding 13) found a non-ASCII key accepted on
``/v1/chat/completions`` and refused on ``/v1/models``: Quart decodes
headers as latin-1, and the key was compared with that text re-encoded as
UTF-8. A master key must now be visible ASCII (config refuses anything else
at load, since HTTP clients disagree on how to send other characters), and
every route compares the raw header bytes, so whatever bytes a client sends,
all routes give the same answer.
"""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import gateway_config, run_gateway

KEY = "sk-master-0123456789"
NON_ASCII = "sk-master-clé-ключ-✓"
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
EMBED = {"model": "m", "input": "hi"}
COMPLETE = {"model": "m", "prompt": "hi"}


def bearer(key: bytes) -> dict[str, bytes]:
    return {"authorization": b"Bearer " + key}


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (bearer(KEY.encode()), 200),
        ({}, 401),
        (bearer(NON_ASCII.encode()), 401),
        (bearer(NON_ASCII.encode("latin-1", "replace")), 401),
        (bearer(KEY.encode()[:-1]), 401),
        (bearer(KEY.encode() + b"x"), 401),
    ],
    ids=["right-key", "none", "utf8-lookalike", "latin1-lookalike", "truncated", "extended"],
)
async def test_the_master_key_is_checked_alike_on_every_route(
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
            await http.post("/v1/embeddings", json=EMBED, headers=authorization),
            await http.post("/embeddings", json=EMBED, headers=authorization),
            await http.post("/v1/completions", json=COMPLETE, headers=authorization),
            await http.post("/completions", json=COMPLETE, headers=authorization),
        ]
        assert [a.status_code for a in answers] == [status] * 7
        if status == 401:
            for answer in answers:
                assert answer.json()["error"]["type"] == "authentication_error"
                assert KEY not in answer.text
        else:
            assert answers[1].json()["data"][0]["id"] == "m"
