"""The ``feathergate`` command: ``serve`` (and its bare form) and ``check``."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import trio
from click.testing import CliRunner

from feathergate.cli import main
from tests.support.cli import gateway_process

ROOT = Path(__file__).parent.parent


def test_check_prints_the_table_without_keys(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: fast\n"
        "    litellm_params: {model: openai/gpt-4o-2024-08-06, api_key: sk-very-secret-value}\n"
        "  - model_name: local\n"
        "    litellm_params: {model: hosted_vllm/llama, api_base: 'http://h:8000/v1'}\n"
        "  - model_name: claude\n"
        "    litellm_params: {model: anthropic/claude-x, api_key: os.environ/UNSET_FOR_TEST}\n"
    )
    result = CliRunner().invoke(main, ["check", "--config", str(config)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        *("MODEL", "PROVIDER", "UPSTREAM", "MODEL", "API", "BASE", "KEY"),
        *("PRICE", "IN/OUT", "PER", "1M"),
    ]
    assert lines[1].split() == [
        *("fast", "openai", "gpt-4o-2024-08-06", "(default)", "set"),
        *("$2.5", "/", "$10", "(table)"),
    ]
    assert lines[2].split() == [
        *("local", "hosted_vllm", "llama", "http://h:8000/v1", "none", "unpriced")
    ]
    assert lines[3].split() == [
        *("claude", "anthropic", "claude-x", "(default)", "missing", "$UNSET_FOR_TEST"),
        "unpriced",
    ]
    assert "sk-very-secret-value" not in result.output


def test_check_exits_2_on_an_invalid_config(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "model_list:\n  - model_name: x\n    litellm_params: {model: openai/y, rpm: lots}\n"
    )
    result = CliRunner().invoke(main, ["check", "--config", str(config)])
    assert result.exit_code == 2
    assert "model_list[0].litellm_params.rpm: expected a number" in result.output


UNSERVABLE = (
    "model_list:\n"
    "  - model_name: ok\n    litellm_params: {model: openai/y, api_key: k}\n"
    "  - model_name: typo\n    litellm_params: {model: opnai/y}\n"
    "  - model_name: elsewhere\n    litellm_params: {model: bedrock/claude}\n"
)


def test_check_lists_models_it_cannot_serve_and_strict_makes_them_fatal(
    tmp_path: Path,
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(UNSERVABLE)
    result = CliRunner().invoke(main, ["check", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert result.stderr.count("warning: model_list[") == 2
    assert "model_list[1].litellm_params.model: unknown provider 'opnai'" in result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert ["typo", "opnai", "y", "(default)", "unavailable", "unpriced"] in rows
    assert ["elsewhere", "bedrock", "claude", "(default)", "unavailable", "unpriced"] in rows
    assert "typo: unknown provider 'opnai'" in result.stdout
    assert "elsewhere: provider 'bedrock' is not supported by FeatherGate yet" in result.stdout

    strict = CliRunner().invoke(main, ["check", "--strict", "--config", str(config)])
    assert strict.exit_code == 2
    assert "--strict: 2 models cannot be served" in strict.stderr
    assert "typo: unknown provider 'opnai'" in strict.stdout


def test_config_path_comes_from_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "env.yaml"
    config.write_text(
        "model_list:\n  - model_name: only\n    litellm_params:\n"
        "      model: openai/x\n      mock_response: hi\n"
    )
    result = CliRunner().invoke(main, ["check"], env={"FEATHERGATE_CONFIG": str(config)})
    assert result.exit_code == 0
    assert "only" in result.output


def test_serve_rejects_a_bad_bind() -> None:
    result = CliRunner().invoke(
        main, ["serve", "--config", str(ROOT / "feathergate.yaml"), "--bind", "nowhere"]
    )
    assert result.exit_code == 2
    assert "HOST:PORT" in result.output


async def test_bare_command_serves_the_shipped_config_and_exits_0_on_sigterm() -> None:
    async with gateway_process("--config", str(ROOT / "feathergate.yaml")) as gateway:
        with trio.fail_after(30):
            async with httpx.AsyncClient(base_url=gateway.url) as http:
                assert (await http.get("/health")).status_code == 200
                response = await http.post(
                    "/v1/chat/completions",
                    json={"model": "demo", "messages": [{"role": "user", "content": "hi"}]},
                )
            assert response.status_code == 200
            assert "FeatherGate" in response.json()["choices"][0]["message"]["content"]
            gateway.process.send_signal(signal.SIGTERM)
            await gateway.read_log()
            assert await gateway.process.wait() == 0, bytes(gateway.log)
    output = gateway.log.decode()
    assert "environment variable OPENAI_API_KEY is not set" in output
    # The supervisor's own line names the port the kernel chose, not the 0 it was given.
    assert f"FeatherGate listening on http://127.0.0.1:{gateway.port} " in output


async def test_second_signal_ends_live_streams_at_once(tmp_path: Path) -> None:
    from tests.fakes.openai import FakeOpenAI, Reply
    from tests.support.rawclient import RawClient, read_sse_until
    from tests.support.servers import serve_asgi

    fake = FakeOpenAI()
    fake.script(Reply(text="a b c d", gate=trio.Event(), after_chunks=3))  # never released
    async with serve_asgi(fake) as upstream:
        config = tmp_path / "c.yaml"
        config.write_text(
            "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/x\n"
            f"      api_base: {upstream}/v1\n      api_key: {fake.api_key}\n"
            "feathergate_settings:\n  shutdown_grace_period: 60\n"
        )
        async with gateway_process("--config", str(config)) as gateway:
            with trio.fail_after(30):
                body = {
                    "model": "m",
                    "messages": [{"role": "user", "content": "x"}],
                    "stream": True,
                }
                client = await RawClient.post(gateway.port, body)
                await read_sse_until(client, 3)
                gateway.process.send_signal(signal.SIGTERM)
                await gateway.read_until(b"draining")
                started = trio.current_time()
                gateway.process.send_signal(signal.SIGINT)
                raw = await client.read_all()
                await client.stream.aclose()
                assert await gateway.process.wait() == 0
            assert trio.current_time() - started < 10  # far below the 60 s grace period
            assert b'"code": "shutting_down"' in raw


async def test_workers_share_one_view_of_the_metrics() -> None:
    args = ("serve", "--config", str(ROOT / "feathergate.yaml"), "--workers", "2")
    async with gateway_process(*args, startup=60) as gateway:
        with trio.fail_after(60):
            # Each worker logs once that it runs; the first line is in already.
            del gateway.log[: gateway.log.index(b"Running on") + 1]
            await gateway.read_until(b"Running on")
            body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
            for _ in range(20):  # fresh connections: the kernel spreads them over workers
                async with httpx.AsyncClient(base_url=gateway.url) as one:
                    assert (await one.post("/v1/chat/completions", json=body)).status_code == 200
            scrapes = []
            for _ in range(10):  # fresh connections again: any worker may answer
                async with httpx.AsyncClient(base_url=gateway.url) as one:
                    scrapes.append((await one.get("/metrics")).text)
            gateway.process.send_signal(signal.SIGTERM)
            assert await gateway.process.wait() == 0
    for text in scrapes:
        line = next(
            line
            for line in text.splitlines()
            if line.startswith('feathergate_requests_total{model="demo",status="200"}')
        )
        assert float(line.split()[-1]) == 20.0
