"""Virtual keys end to end: raw HTTP -> FeatherGate (Hypercorn) -> the strict fake OpenAI,
over both stores (SQLite, and a real PostgreSQL server)."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from feathergate.config import Config, parse_config
from feathergate.keys.records import KeyRecord
from feathergate.keys.store import open_store
from feathergate.keys.tokens import generate_key, hash_key, key_name
from tests.conftest import run_gateway
from tests.fakes.openai import FakeOpenAI, Reply
from tests.support.postgres import PostgresServer, postgres_server
from tests.support.servers import serve_asgi

__all__ = ["postgres_server"]

MASTER = "sk-master-key-for-tests"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
USER = [{"role": "user", "content": "hi"}]
# Binary fractions: budget arithmetic in these tests is exact.
EIGHTH = 0.125


def config_for(upstream: str, db_url: str, **litellm: Any) -> Config:
    def model(name: str, info: dict[str, Any]) -> dict[str, Any]:
        params = {
            "model": "openai/gpt-4o",
            "api_base": f"{upstream}/v1",
            "api_key": "sk-upstream-secret",
        }
        return {"model_name": name, "litellm_params": params, "model_info": info}

    raw = {
        "model_list": [
            model("gpt", {}),  # priced from the shipped table (gpt-4o)
            model("eighth", {"input_cost_per_token": 0, "output_cost_per_token": EIGHTH}),
            model("free", {"input_cost_per_token": 0, "output_cost_per_token": 0}),
            # Embeddings are priced per input token; the output price never applies.
            model("embed", {"input_cost_per_token": EIGHTH, "output_cost_per_token": 1}),
        ],
        "general_settings": {"master_key": MASTER, "database_url": db_url},
        "litellm_settings": litellm,
        "feathergate_settings": {"shutdown_grace_period": 1},
    }
    return parse_config(raw, {})


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/feathergate.db"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.new_database()


class SignallingOpenAI(FakeOpenAI):
    """The fake, and an event set when a request arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = trio.Event()

    async def _handle(self, scope: Any, receive: Any, send: Any) -> None:
        self.arrived.set()
        await super()._handle(scope, receive, send)


@pytest.fixture
async def fake() -> AsyncIterator[tuple[SignallingOpenAI, str]]:
    upstream = SignallingOpenAI()
    async with serve_asgi(upstream) as url:
        yield upstream, url


class Client:
    def __init__(self, http: httpx.AsyncClient, base: str) -> None:
        self.http = http
        self.base = base

    async def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.request(method, self.base + path, headers=ADMIN, **kwargs)

    async def new_key(self, **fields: Any) -> str:
        response = await self.admin("POST", "/key/generate", json=fields)
        assert response.status_code == 200, response.text
        return str(response.json()["key"])

    async def chat(self, key: str, model: str = "gpt", **body: Any) -> httpx.Response:
        payload = {"model": model, "messages": USER, **body}
        headers = {"Authorization": f"Bearer {key}"}
        return await self.http.post(
            f"{self.base}/v1/chat/completions", json=payload, headers=headers
        )

    async def info(self, key: str) -> dict[str, Any]:
        response = await self.admin("GET", "/key/info", params={"key": key})
        assert response.status_code == 200, response.text
        return dict(response.json()["info"])


@asynccontextmanager
async def gateway(config: Config) -> AsyncIterator[Client]:
    async with run_gateway(config) as base, httpx.AsyncClient(timeout=30) as http:
        yield Client(http, base)


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error", "request_id"}
    assert body["request_id"] == response.headers["x-request-id"]
    error = dict(body["error"])
    assert set(error) == {"message", "type", "param", "code"}
    assert "{'" not in error["message"]  # plain sentences, never a dict repr
    return error


async def test_key_endpoints_and_enforcement(
    fake: tuple[SignallingOpenAI, str], db_url: str
) -> None:
    _, upstream = fake
    async with gateway(config_for(upstream, db_url)) as c:
        raw = await c.new_key(key_alias="alice", models=["gpt"], max_budget=10, metadata={"a": 1})
        assert raw.startswith("sk-")
        assert len(raw) == 25
        ok = await c.chat(raw)
        assert ok.status_code == 200, ok.text
        cost = float(ok.headers["x-litellm-response-cost"])
        assert cost == pytest.approx(9 * 2.5e-6 + 4 * 10e-6)  # gpt-4o's table price
        assert float(ok.headers["x-litellm-key-spend"]) == pytest.approx(cost)
        assert float(ok.headers["x-litellm-key-max-budget"]) == 10
        info = await c.info(raw)
        assert info["key_alias"] == "alice"
        assert info["key_name"] == key_name(raw)
        assert info["spend"] == pytest.approx(cost)  # visible at once, not after 10-18 s
        assert info["metadata"] == {"a": 1}
        assert "token" not in info

        # Every header a client may use, in LiteLLM's order.
        for header in ("x-litellm-api-key", "api-key", "x-api-key", "x-goog-api-key"):
            response = await c.http.post(
                f"{c.base}/v1/chat/completions",
                json={"model": "gpt", "messages": USER},
                headers={header: raw, "Authorization": "Bearer sk-not-a-key-at-all"}
                if header == "x-litellm-api-key"
                else {header: raw},
            )
            assert response.status_code == 200, (header, response.text)

        denied = await c.chat(raw, model="eighth")
        assert denied.status_code == 403
        assert error_of(denied)["type"] == "key_model_access_denied"

        duplicate = await c.admin("POST", "/key/generate", json={"key_alias": "alice"})
        assert duplicate.status_code == 400
        assert error_of(duplicate)["message"] == "Key with alias 'alice' already exists."
        negative = await c.admin("POST", "/key/generate", json={"max_budget": -1})
        assert error_of(negative)["message"] == "max_budget cannot be negative. Received: -1"
        short = await c.admin("POST", "/key/generate", json={"key": "sk-short"})
        assert short.status_code == 400
        bad_duration = await c.admin("POST", "/key/generate", json={"budget_duration": "30"})
        assert bad_duration.status_code == 400

        # Only admins manage keys; a key reads its own info.
        user_headers = {"Authorization": f"Bearer {raw}"}
        refused = await c.http.post(f"{c.base}/key/generate", json={}, headers=user_headers)
        assert refused.status_code == 403
        own = await c.http.get(f"{c.base}/key/info", headers=user_headers)
        assert own.status_code == 200
        assert own.json()["info"]["key_alias"] == "alice"
        admin_raw = await c.new_key(user_role="proxy_admin")
        made = await c.http.post(
            f"{c.base}/key/generate", json={}, headers={"Authorization": f"Bearer {admin_raw}"}
        )
        assert made.status_code == 200

        updated = await c.admin(
            "POST", "/key/update", json={"key": raw, "models": ["gpt", "eighth"]}
        )
        assert updated.status_code == 200
        assert updated.json()["models"] == ["gpt", "eighth"]
        assert (await c.chat(raw, model="eighth")).status_code == 200

        blocked = await c.admin("POST", "/key/block", json={"key": hash_key(raw)})
        assert blocked.json()["blocked"] is True
        response = await c.chat(raw)
        assert response.status_code == 401
        assert "Key is blocked" in error_of(response)["message"]
        await c.admin("POST", "/key/unblock", json={"key": raw})
        assert (await c.chat(raw)).status_code == 200

        listed = await c.admin("GET", "/key/list", params={"page": 1, "size": 2})
        page = listed.json()
        assert page["total_count"] == 3
        assert page["total_pages"] == 2
        assert len(page["keys"]) == 2
        assert all(len(k) == 64 for k in page["keys"])
        alias = await c.admin(
            "GET", "/key/list", params={"key_alias": "alice", "return_full_object": "true"}
        )
        assert [k["key_alias"] for k in alias.json()["keys"]] == ["alice"]

        regenerated = await c.admin("POST", f"/key/{raw}/regenerate", json={"grace_period": "1h"})
        assert regenerated.status_code == 200, regenerated.text
        new_raw = regenerated.json()["key"]
        assert new_raw != raw
        assert (await c.chat(new_raw)).status_code == 200
        assert (await c.chat(raw)).status_code == 200  # still valid during the grace period
        assert (await c.info(new_raw))["key_alias"] == "alice"
        again = await c.admin("POST", "/key/regenerate", json={"key": new_raw})
        newest = again.json()["key"]
        gone = await c.chat(new_raw)  # no grace period this time
        assert gone.status_code == 401
        assert error_of(gone)["type"] == "token_not_found_in_db"

        deleted = await c.admin("POST", "/key/delete", json={"key_aliases": ["alice"]})
        assert deleted.json() == {"deleted_keys": ["alice"]}
        response = await c.chat(newest)
        assert response.status_code == 401
        error = error_of(response)
        assert error["type"] == "token_not_found_in_db"
        assert newest not in error["message"]
        assert key_name(newest) in error["message"]
        missing = await c.admin("POST", "/key/delete", json={"keys": [newest]})
        assert missing.status_code == 404
        assert (await c.admin("GET", "/key/info", params={"key": newest})).status_code == 404

        nokey = await c.http.post(
            f"{c.base}/v1/chat/completions", json={"model": "gpt", "messages": USER}
        )
        assert nokey.status_code == 401
        assert error_of(nokey)["type"] == "auth_error"
        models = await c.http.get(
            f"{c.base}/v1/models", headers={"Authorization": f"Bearer {admin_raw}"}
        )
        assert models.status_code == 200


async def test_expired_keys_are_refused(fake: tuple[SignallingOpenAI, str], db_url: str) -> None:
    _, upstream = fake
    raw = generate_key()
    store = open_store(db_url)
    await store.migrate()
    now = time.time()
    await store.insert_key(
        KeyRecord(hash_key(raw), key_name(raw), expires=now - 1, created_at=now, updated_at=now)
    )
    await store.aclose()
    async with gateway(config_for(upstream, db_url)) as c:
        response = await c.chat(raw)
        assert response.status_code == 401
        error = error_of(response)
        assert error["type"] == "expired_key"
        assert error["param"] == key_name(raw)
        fresh = await c.new_key(duration="1h")
        assert (await c.chat(fresh)).status_code == 200
        expires = (await c.info(fresh))["expires"]
        assert expires is not None


async def test_teams(fake: tuple[SignallingOpenAI, str], db_url: str) -> None:
    _, upstream = fake
    async with gateway(config_for(upstream, db_url)) as c:
        made = await c.admin(
            "POST",
            "/team/new",
            json={"team_id": "t1", "team_alias": "Team One", "models": ["gpt"], "rpm_limit": 100},
        )
        assert made.status_code == 200, made.text
        assert made.json()["team_alias"] == "Team One"
        clash = await c.admin("POST", "/team/new", json={"team_id": "t1"})
        assert clash.status_code == 400
        orphan = await c.admin("POST", "/key/generate", json={"team_id": "nope"})
        assert orphan.status_code == 400
        raw = await c.new_key(team_id="t1", models=["gpt", "eighth"])
        assert (await c.chat(raw)).status_code == 200
        # The key allows "eighth", the team does not: key ∩ team.
        denied = await c.chat(raw, model="eighth")
        assert denied.status_code == 403
        assert error_of(denied)["type"] == "key_model_access_denied"
        info = await c.admin("GET", "/team/info", params={"team_id": "t1"})
        body = info.json()
        assert body["team_info"]["spend"] > 0
        assert [k["key_name"] for k in body["keys"]] == [key_name(raw)]
        await c.admin("POST", "/team/update", json={"team_id": "t1", "blocked": True})
        blocked = await c.chat(raw)
        assert blocked.status_code == 401
        assert "Team=t1 is blocked" in error_of(blocked)["message"]
        await c.admin(
            "POST", "/team/update", json={"team_id": "t1", "blocked": False, "max_budget": 0}
        )
        over = await c.chat(raw)
        assert over.status_code == 422
        error = error_of(over)
        assert error["type"] == "budget_exceeded"
        assert "Team=t1" in error["message"]
        teams = await c.admin("GET", "/team/list")
        assert [t["team_id"] for t in teams.json()] == ["t1"]
        assert (await c.admin("GET", "/team/info", params={"team_id": "zz"})).status_code == 404
        deleted = await c.admin("POST", "/team/delete", json={"team_ids": ["t1"]})
        assert deleted.json() == {"deleted_teams": ["t1"]}
        assert (await c.chat(raw)).status_code == 401


async def test_rate_limits_of_key_and_team(
    fake: tuple[SignallingOpenAI, str], tmp_path: Path
) -> None:
    upstream_fake, upstream = fake
    async with gateway(config_for(upstream, f"sqlite:///{tmp_path}/k.db")) as c:
        raw = await c.new_key(rpm_limit=2)
        first = await c.chat(raw)
        assert first.headers["x-ratelimit-api_key-limit-requests"] == "2"
        assert first.headers["x-ratelimit-api_key-remaining-requests"] == "1"
        assert (await c.chat(raw)).status_code == 200
        limited = await c.chat(raw)
        assert limited.status_code == 429
        assert error_of(limited)["type"] == "throttling_error"
        # The seam's sliding window frees a slot up to one bucket (1 s) late.
        assert 1 <= int(limited.headers["retry-after"]) <= 61
        assert limited.headers["x-ratelimit-api_key-remaining-requests"] == "0"

        await c.admin("POST", "/team/new", json={"team_id": "slow", "rpm_limit": 1})
        teamed = await c.new_key(team_id="slow", rpm_limit=100)
        assert (await c.chat(teamed)).status_code == 200
        limited = await c.chat(teamed)
        assert limited.status_code == 429
        assert "team" in error_of(limited)["message"]

        parallel = await c.new_key(max_parallel_requests=1)
        gate = trio.Event()
        upstream_fake.script(Reply(before_headers=gate))
        async with trio.open_nursery() as nursery:
            results: list[int] = []

            async def held() -> None:
                results.append((await c.chat(parallel)).status_code)

            upstream_fake.arrived = trio.Event()
            nursery.start_soon(held)
            with trio.fail_after(10):  # until the first call is held upstream
                await upstream_fake.arrived.wait()
            second = await c.chat(parallel)
            assert second.status_code == 429
            assert "max_parallel_requests" in error_of(second)["message"]
            gate.set()
        assert results == [200]
        assert (await c.chat(parallel)).status_code == 200


async def test_budget_is_exact_under_concurrency(
    fake: tuple[SignallingOpenAI, str], db_url: str
) -> None:
    upstream_fake, upstream = fake
    # Each call may cost 8 * 1/8 = 1.0 at most and really costs 4 * 1/8 = 0.5.
    async with gateway(config_for(upstream, db_url)) as c:
        raw = await c.new_key(max_budget=5.0)
        gate = trio.Event()
        upstream_fake.default = Reply(before_headers=gate)
        send, receive = trio.open_memory_channel[httpx.Response](20)
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(_call, c, raw, send.clone())
            refused: list[httpx.Response] = []
            with trio.fail_after(20):
                while len(refused) < 15:  # 15 are refused while the 5 admitted wait upstream
                    refused.append(await receive.receive())
            assert len(upstream_fake.requests) <= 5
            gate.set()
            with trio.fail_after(20):
                done = [await receive.receive() for _ in range(5)]
        assert {r.status_code for r in refused} == {422}
        assert {error_of(r)["type"] for r in refused} == {"budget_exceeded"}
        assert all(r.headers["x-should-retry"] == "false" for r in refused)
        assert [r.status_code for r in done] == [200] * 5
        spent = sum(float(r.headers["x-litellm-response-cost"]) for r in done)
        assert spent == 2.5
        assert (await c.info(raw))["spend"] == 2.5
        # 2.5 left: two full reservations, then a third shrunk to what is left.
        upstream_fake.default = Reply()
        statuses = [(await c.chat(raw, model="eighth", max_tokens=8)).status_code for _ in range(8)]
        assert statuses == [200] * 5 + [422] * 3
        assert (await c.info(raw))["spend"] == 5.0


async def _call(c: Client, raw: str, send: trio.MemorySendChannel[httpx.Response]) -> None:
    async with send:
        await send.send(await c.chat(raw, model="eighth", max_tokens=8))


async def test_budget_status_code_and_duration(
    fake: tuple[SignallingOpenAI, str], tmp_path: Path
) -> None:
    _, upstream = fake
    config = config_for(upstream, f"sqlite:///{tmp_path}/k.db", budget_exceeded_status_code=429)
    async with gateway(config) as c:
        raw = await c.new_key(max_budget=0.5, budget_duration="1d", key_alias="bob")
        assert (await c.chat(raw, model="eighth")).status_code == 200
        over = await c.chat(raw, model="eighth")
        assert over.status_code == 429
        error = error_of(over)
        assert error["type"] == "budget_exceeded"
        assert f"Key=bob ({key_name(raw)})" in error["message"]
        info = await c.info(raw)
        assert info["budget_duration"] == "1d"
        assert info["budget_reset_at"].endswith("T00:00:00+00:00")
        free = await c.chat(raw, model="free")  # both prices zero: no budget applies
        assert free.status_code == 200


async def test_stream_billing_asks_upstream_for_usage(
    fake: tuple[SignallingOpenAI, str], tmp_path: Path
) -> None:
    upstream_fake, upstream = fake
    async with gateway(config_for(upstream, f"sqlite:///{tmp_path}/k.db")) as c:
        raw = await c.new_key()
        response = await c.chat(raw, model="eighth", stream=True)
        assert response.status_code == 200
        assert float(response.headers["x-litellm-key-spend"]) == 0
        events = [
            json.loads(line[6:])
            for line in response.text.splitlines()
            if line.startswith("data: {")
        ]
        assert all(e["choices"] for e in events)  # the usage chunk was not asked for: stripped
        assert upstream_fake.requests[-1].body["stream_options"] == {"include_usage": True}
        asked = await c.chat(
            raw, model="eighth", stream=True, stream_options={"include_usage": True}
        )
        last = [
            json.loads(line[6:]) for line in asked.text.splitlines() if line.startswith("data: {")
        ][-1]
        assert last["choices"] == []
        assert last["usage"]["total_tokens"] == 13
        logs = await c.admin("GET", "/spend/logs", params={"api_key": raw})
        rows = logs.json()
        assert [r["total_tokens"] for r in rows] == [13, 13]
        assert [r["spend"] for r in rows] == [0.5, 0.5]
        one = await c.admin("GET", "/spend/logs", params={"request_id": rows[0]["request_id"]})
        assert len(one.json()) == 1
        today = time.strftime("%Y-%m-%d", time.gmtime())
        summary = await c.admin(
            "GET", "/spend/logs", params={"start_date": today, "end_date": today}
        )
        assert summary.json()[0]["spend"] == 1.0
        for group_by in ("team", "api_key", "model"):
            report = await c.admin("GET", "/global/spend/report", params={"group_by": group_by})
            assert report.status_code == 200, report.text
        by_model = await c.admin("GET", "/global/spend/report", params={"group_by": "model"})
        assert by_model.json()[0]["total_cost"] == 1.0


async def test_keys_and_spend_survive_a_restart_and_no_raw_key_is_stored(
    fake: tuple[SignallingOpenAI, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, upstream = fake
    caplog.set_level(logging.DEBUG)
    db = tmp_path / "feathergate.db"
    config = config_for(upstream, f"sqlite:///{db}")
    async with gateway(config) as c:
        raw = await c.new_key(max_budget=100)
        response = await c.chat(raw, model="eighth")
        assert response.status_code == 200
        metrics = (await c.http.get(f"{c.base}/metrics")).text
    async with gateway(config) as c:
        assert (await c.chat(raw, model="eighth")).status_code == 200
        assert (await c.info(raw))["spend"] == 1.0
    stored = b"".join(
        p.read_bytes()
        for p in await trio.to_thread.run_sync(lambda: list(tmp_path.iterdir()))
        if p.name.startswith("feathergate.db")
    )
    assert hash_key(raw).encode() in stored
    assert raw.encode() not in stored
    assert raw[3:].encode() not in stored
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert ours  # the gateway did log (start, stop)
    assert not [line for line in ours if raw in line]
    assert raw not in metrics
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version FROM fg_schema").fetchone() == (1,)


async def test_two_instances_share_keys_and_deletes(
    fake: tuple[SignallingOpenAI, str], db_url: str
) -> None:
    _, upstream = fake
    config = config_for(upstream, db_url)
    async with gateway(config) as a, gateway(config) as b:
        raw = await a.new_key()
        assert (await b.chat(raw)).status_code == 200  # first sight on b: read from the store
        await b.admin("POST", "/key/delete", json={"keys": [raw]})
        started = time.monotonic()
        status = 200
        with trio.fail_after(5):
            while status == 200:
                status = (await a.chat(raw)).status_code
                if status == 200:
                    await trio.sleep(0.05)
        assert status == 401
        assert time.monotonic() - started < 1.0 + 0.5  # the 1 s promise, with room for CI


async def test_store_outage(
    fake: tuple[SignallingOpenAI, str], postgres_server: PostgresServer
) -> None:
    _, upstream = fake
    url = postgres_server.new_database()
    async with gateway(config_for(upstream, url)) as c:
        cached = await c.new_key()
        unseen = await c.new_key()
        assert (await c.chat(cached, model="eighth")).status_code == 200
        await trio.to_thread.run_sync(postgres_server.stop)
        try:
            assert (await c.chat(cached, model="eighth")).status_code == 200
            down = await c.chat(unseen)
            assert down.status_code == 503  # never a misleading 401
            assert "unreachable" in error_of(down)["message"]
        finally:
            await trio.to_thread.run_sync(postgres_server.start)
        assert (await c.info(cached))["spend"] == 1.0  # the buffered row reached the store
        assert (await c.chat(unseen)).status_code == 200


async def test_embeddings_and_completions_take_virtual_keys(
    fake: tuple[SignallingOpenAI, str], db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    _, upstream = fake
    caplog.set_level(logging.INFO, logger="feathergate.access")
    async with gateway(config_for(upstream, db_url)) as c:
        raw = await c.new_key(key_alias="bob", models=["embed", "gpt"], max_budget=1)
        other = await c.new_key(models=["gpt"])
        mine = {"Authorization": f"Bearer {raw}"}

        async def post(path: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
            return await c.http.post(f"{c.base}{path}", json=body, headers=headers)

        embedding = {"model": "embed", "input": ["one two three", "four"]}
        embedded = await post("/v1/embeddings", embedding, mine)
        assert embedded.status_code == 200, embedded.text
        tokens = embedded.json()["usage"]["prompt_tokens"]
        assert tokens > 0
        embed_cost = float(embedded.headers["x-litellm-response-cost"])
        assert embed_cost == tokens * EIGHTH
        completion = {"model": "gpt", "prompt": "hi", "max_tokens": 4}
        completed = await post("/v1/completions", completion, mine)
        assert completed.status_code == 200, completed.text
        text_cost = float(completed.headers["x-litellm-response-cost"])
        assert text_cost == pytest.approx(9 * 2.5e-6 + 4 * 10e-6)
        assert (await c.info(raw))["spend"] == pytest.approx(embed_cost + text_cost)

        for path, body in (("/v1/embeddings", embedding), ("/v1/completions", completion)):
            nobody = await post(path, body, {})
            assert nobody.status_code == 401, path
            assert error_of(nobody)["message"] == "Authentication Error, No api key passed in."
        denied = await post("/v1/embeddings", embedding, {"Authorization": f"Bearer {other}"})
        assert denied.status_code == 403
        assert error_of(denied)["type"] == "key_model_access_denied"

    # The access log names the key by its alias (or sk-...last4), never the key, with the cost.
    lines = [r.getMessage() for r in caplog.records if r.name == "feathergate.access"]
    embeds = [line for line in lines if '"POST /v1/embeddings" 200' in line]
    assert len(embeds) == 1
    assert f"cost={embed_cost} key=bob " in embeds[0]
    refused = [line for line in lines if '"POST /v1/embeddings" 403' in line]
    assert len(refused) == 1
    assert f"key={key_name(other)} " in refused[0]
    assert not any(raw in line or other in line for line in lines)


def anthropic_error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"type", "error", "request_id"}
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}
    return dict(body["error"])


async def test_messages_and_count_tokens_take_virtual_keys(
    fake: tuple[SignallingOpenAI, str], db_url: str
) -> None:
    _, upstream = fake
    async with gateway(config_for(upstream, db_url)) as c:
        raw = await c.new_key(max_budget=1.0, models=["eighth"])

        async def post(path: str, key: str, **body: Any) -> httpx.Response:
            payload = {"model": "eighth", "messages": USER, **body}
            headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
            return await c.http.post(f"{c.base}{path}", json=payload, headers=headers)

        # Streamed through the Messages translation: billed from the upstream's usage.
        streamed = await post("/v1/messages", raw, max_tokens=8, stream=True)
        assert streamed.status_code == 200, streamed.text
        assert "event: message_stop" in streamed.text
        assert streamed.headers["x-litellm-key-max-budget"] == "1.0"
        whole = await post("/v1/messages", raw, max_tokens=8)
        assert whole.status_code == 200, whole.text
        assert whole.json()["type"] == "message"
        assert float(whole.headers["x-litellm-response-cost"]) == 0.5
        assert (await c.info(raw))["spend"] == 1.0

        over = await post("/v1/messages", raw, max_tokens=8)
        assert over.status_code == 422
        assert anthropic_error(over)["message"].startswith("Budget has been exceeded!")
        # count_tokens needs a valid key, and reserves nothing: it still answers.
        counted = await post("/v1/messages/count_tokens", raw)
        assert counted.status_code == 200, counted.text
        assert counted.json()["input_tokens"] > 0
        assert (await c.info(raw))["spend"] == 1.0

        denied = await post("/v1/messages", raw, max_tokens=8, model="gpt")
        assert denied.status_code == 403
        assert anthropic_error(denied)["type"] == "permission_error"
        for path in ("/v1/messages", "/v1/messages/count_tokens"):
            unknown = await post(path, "sk-not-a-key-of-this-gateway", max_tokens=8)
            assert unknown.status_code == 401
            error = anthropic_error(unknown)
            assert error["type"] == "authentication_error"
            assert "sk-not-a-key-of-this-gateway" not in error["message"]
