"""Reload: SIGHUP in the middle of running streams, an invalid config, every worker."""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import yaml

from feathergate.app import create_app
from feathergate.config import load_config, parse_config
from feathergate.generation import Runtime
from feathergate.reload import reload_once
from tests.conftest import run_gateway
from tests.fakes.openai import FakeOpenAI, Reply
from tests.support.cli import gateway_process
from tests.support.servers import serve_asgi

STREAMS = 50
WORDS = " ".join(f"w{i}" for i in range(20))  # 20 content chunks; the gate holds after 5


def _write(path: Path, old_url: str, new_url: str | None, master: str) -> None:
    models: list[dict[str, Any]] = []
    if new_url is None:  # the first config: two aliases on the old upstream
        models += [
            _entry("chat", "old-model", old_url, "keep"),
            _entry("legacy", "old-model", old_url, "gone"),
        ]
    else:  # the second: "legacy" removed, "chat" on another upstream and model
        models += [_entry("chat", "new-model", new_url, "moved"), _entry("extra", "x", new_url)]
    raw = {
        "model_list": models,
        "general_settings": {"master_key": master},
        "feathergate_settings": {"shutdown_grace_period": 5},
    }
    path.write_text(yaml.safe_dump(raw))


def _entry(name: str, model: str, url: str, dep_id: str | None = None) -> dict[str, Any]:
    params = {"model": f"openai/{model}", "api_base": f"{url}/v1", "api_key": "sk-upstream-secret"}
    info = {"id": dep_id} if dep_id else {}
    return {"model_name": name, "litellm_params": params, "model_info": info}


async def _sighup(runtime: Runtime) -> None:
    done = runtime.reloaded
    os.kill(os.getpid(), signal.SIGHUP)
    with trio.fail_after(10):
        await done.wait()


async def test_reload_mid_way_through_50_streams_cuts_none(tmp_path: Path) -> None:
    old_up, new_up = FakeOpenAI(), FakeOpenAI()
    gate = trio.Event()
    old_up.default = Reply(text=WORDS, after_chunks=5, gate=gate)
    new_up.default = Reply(text="from the new one")
    config_path = tmp_path / "feathergate.yaml"
    async with serve_asgi(old_up) as old_url, serve_asgi(new_up) as new_url:
        _write(config_path, old_url, None, "sk-master-old")
        config = load_config(config_path)
        app = create_app(config)
        runtime = app.runtime
        first = runtime.current
        mid_stream = trio.Semaphore(0)
        results: list[tuple[list[str], bool]] = []

        async def one_stream(client: httpx.AsyncClient, base: str) -> None:
            body = {"model": "chat", "stream": True, "messages": [{"role": "user", "content": "x"}]}
            headers = {"authorization": "Bearer sk-master-old"}
            words: list[str] = []
            done = False
            async with client.stream(
                "POST", f"{base}/v1/chat/completions", json=body, headers=headers
            ) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    if line == "data: [DONE]":
                        done = True
                        continue
                    chunk = json.loads(line[6:])
                    assert "error" not in chunk, chunk
                    for choice in chunk["choices"]:
                        if choice["delta"].get("content"):
                            words.append(choice["delta"]["content"].strip())
                            if len(words) == 4:  # the gate holds the upstream after this
                                mid_stream.release()
            results.append((words, done))

        async with run_gateway(config, app=app) as base:
            limits = httpx.Limits(max_connections=STREAMS + 10)
            async with httpx.AsyncClient(timeout=30, limits=limits) as client:
                async with trio.open_nursery() as nursery:
                    for _ in range(STREAMS):
                        nursery.start_soon(one_stream, client, base)
                    with trio.fail_after(30):
                        for _ in range(STREAMS):
                            await mid_stream.acquire()
                    assert first.active == STREAMS

                    _write(config_path, old_url, new_url, "sk-master-new")
                    await _sighup(runtime)
                    assert runtime.current is not first

                    # New requests: the new keys, model list and upstream, at once.
                    new_key = {"authorization": "Bearer sk-master-new"}
                    old_key = {"authorization": "Bearer sk-master-old"}
                    ask = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
                    url = f"{base}/v1/chat/completions"
                    answer = await client.post(url, json=ask, headers=new_key)
                    assert answer.status_code == 200, answer.text
                    assert answer.json()["choices"][0]["message"]["content"] == "from the new one"
                    assert answer.headers["x-feathergate-model-id"] == "moved"
                    assert new_up.requests[-1].body["model"] == "new-model"
                    assert (await client.post(url, json=ask, headers=old_key)).status_code == 401
                    gone = await client.post(url, json={**ask, "model": "legacy"}, headers=new_key)
                    assert gone.status_code == 404
                    assert gone.json()["error"]["code"] == "model_not_found"
                    listed = await client.get(f"{base}/v1/models", headers=new_key)
                    assert [m["id"] for m in listed.json()["data"]] == ["chat", "extra"]

                    # The old generation still holds its 50 streams and its upstream pool.
                    assert first.active == STREAMS
                    assert not first.released.is_set()
                    gate.set()
                with trio.fail_after(30):
                    await first.released.wait()
                assert len(runtime.origins) == 1  # the old upstream's pool is closed

    assert len(results) == STREAMS
    for words, done in results:
        assert words == WORDS.split(), words
        assert done
    assert len(old_up.requests) == STREAMS
    assert all(seen.body["model"] == "old-model" for seen in old_up.requests)


async def test_an_invalid_config_is_refused_and_the_old_one_stays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "feathergate.yaml"
    path.write_text(
        "model_list:\n  - model_name: demo\n    litellm_params: {model: openai/x, "
        "mock_response: still here}\n"
    )
    config = load_config(path)
    app = create_app(config)
    async with run_gateway(config, app=app) as base, httpx.AsyncClient() as client:
        path.write_text(
            "model_list:\n  - model_name: demo\n    litellm_params: {model: openai/x, rpm: .nan}\n"
        )
        with caplog.at_level(logging.ERROR, logger="feathergate"):
            await _sighup(app.runtime)
        refused = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert refused == [
            "reload refused, still serving the previous config: invalid config: "
            "model_list[0].litellm_params.rpm: expected a finite number, got nan"
        ]
        assert app.runtime.current.number == 1
        ask = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
        answer = await client.post(f"{base}/v1/chat/completions", json=ask)
        assert answer.json()["choices"][0]["message"]["content"] == "still here"


async def test_router_state_of_surviving_deployments_is_kept() -> None:
    def config(*ids: str) -> Any:
        entries = [
            {"model_name": "m", "litellm_params": {"model": "openai/x", "mock_response": "ok"}}
            | {"model_info": {"id": i}}
            for i in ids
        ]
        return parse_config({"model_list": entries}, {})

    runtime = Runtime(config("a", "b"))
    router = runtime.router
    for _ in range(2):
        plan = router.plan("m", stream=False, prompt_tokens=10)
        chosen = plan.next()
        plan.started(chosen)
        plan.succeeded(chosen, latency=0.1, ttft=None)
    assert sum(s["requests"] for s in router.snapshot().values()) == 2
    before = router.snapshot()
    runtime.swap(config("a", "c"))
    after = runtime.router.snapshot()
    assert after["a"]["requests"] == before["a"]["requests"]
    assert after["c"]["requests"] == 0
    assert "b" not in after
    await runtime.close()


async def test_ids_do_not_depend_on_the_place_in_the_list() -> None:
    one = {"model_name": "m", "litellm_params": {"model": "openai/x", "mock_response": "a"}}
    two = {"model_name": "n", "litellm_params": {"model": "openai/y", "mock_response": "b"}}
    alone = parse_config({"model_list": [two]}, {}).deployments[0].id
    after = parse_config({"model_list": [one, two]}, {}).deployments[1].id
    assert alone == after
    twins = parse_config({"model_list": [two, two]}, {}).deployments
    assert twins[0].id == alone != twins[1].id


async def test_every_worker_reloads(tmp_path: Path) -> None:
    path = tmp_path / "feathergate.yaml"

    def write(*names: str) -> None:
        entries = [
            {"model_name": n, "litellm_params": {"model": "openai/x", "mock_response": n}}
            for n in names
        ]
        path.write_text(yaml.safe_dump({"model_list": entries}))

    write("before")
    args = ("serve", "--config", str(path), "--workers", "2")
    async with gateway_process(*args, startup=60) as gateway:
        with trio.fail_after(60):
            del gateway.log[: gateway.log.index(b"Running on") + 1]
            await gateway.read_until(b"Running on")  # both workers listen
            write("after", "also")
            gateway.process.send_signal(signal.SIGHUP)
            await gateway.read_until(b"reloaded")
            del gateway.log[: gateway.log.index(b"reloaded") + 1]
            await gateway.read_until(b"reloaded")  # the second worker
            seen = set()
            for _ in range(20):  # fresh connections: the kernel spreads them over workers
                async with httpx.AsyncClient(base_url=gateway.url) as one:
                    models = (await one.get("/v1/models")).json()["data"]
                    seen.add(tuple(m["id"] for m in models))
            gateway.process.send_signal(signal.SIGTERM)
            assert await gateway.process.wait() == 0
    assert seen == {("after", "also")}


def test_reload_command_signals_the_pid(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from feathergate.cli import main

    received: list[int] = []
    previous = signal.signal(signal.SIGHUP, lambda signum, frame: received.append(signum))
    try:
        result = CliRunner().invoke(main, ["reload", "--pid", str(os.getpid())])
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert result.exit_code == 0, result.output
    assert received == [signal.SIGHUP]
    missing = CliRunner().invoke(main, ["reload", "--pid", str(2**22 + 12345)])
    assert missing.exit_code == 1
    assert "no process" in missing.output


def test_a_reload_under_workers_keeps_the_per_worker_split(tmp_path: Path) -> None:
    from feathergate.server import _worker_loader, per_worker

    path = tmp_path / "c.yaml"

    def entry(rpm: int) -> dict[str, Any]:
        params = {"model": "openai/x", "mock_response": "hi", "rpm": rpm}
        return {"model_name": "m", "litellm_params": params}

    path.write_text(yaml.safe_dump({"model_list": [entry(10)]}))
    started = per_worker(load_config(path), 2)
    assert started.deployments[0].rpm == 5
    path.write_text(yaml.safe_dump({"model_list": [entry(30)]}))
    loader = _worker_loader(None, started)
    assert loader is not None
    assert loader().deployments[0].rpm == 15  # the new limit, split the same way
    assert _worker_loader(None, load_config(path)) is not None  # one worker: the file as it is


async def test_virtual_keys_survive_a_reload_and_their_settings_wait_for_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def config(db: str, *ids: str) -> Any:
        entries = [
            {"model_name": "m", "litellm_params": {"model": "openai/gpt-4o", "mock_response": "ok"}}
            | {"model_info": {"id": i}}
            for i in ids
        ]
        settings = {"master_key": "sk-master-1234", "database_url": f"sqlite:///{tmp_path}/{db}"}
        return parse_config({"model_list": entries, "general_settings": settings}, {})

    runtime = Runtime(config("one.db", "a"))
    keys = runtime.keys
    assert keys is not None
    assert set(keys.prices) == {"a"}
    with caplog.at_level(logging.WARNING, logger="feathergate"):
        assert await reload_once(runtime, lambda: config("two.db", "a", "b"))
    assert runtime.keys is keys  # the store, caches and spend buffer are the process's
    assert keys.settings.database_url == f"sqlite:///{tmp_path}/one.db"
    assert set(keys.prices) == {"a", "b"}  # the new deployments are priced
    assert keys.groups == {"m": ("a", "b")}
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [
        "changed settings take effect at the next restart: "
        "virtual keys (database_url and the key settings)"
    ]
    assert not any("two.db" in line for line in warned)  # a URL may hold a password
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="feathergate"):
        assert await reload_once(runtime, lambda: config("one.db", "a"))
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
    await runtime.close()
