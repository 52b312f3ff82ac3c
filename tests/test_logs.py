"""Log lines: JSON from the first line to the last, and a stalled stream never stalls the caller."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import yaml

from feathergate import metrics
from feathergate.observability.logs import JsonFormatter, NonBlockingHandler, TextFormatter
from tests.support.cli import gateway_process

MASTER_KEY = "sk-master-secret-0003"


class StalledStream:
    """A stream whose writes block until released: a pipe nobody reads."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.writing = threading.Event()
        self.written: list[str] = []

    def write(self, text: str) -> int:
        self.writing.set()
        self.release.wait(30)
        self.written.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("feathergate.test", logging.INFO, __file__, 1, message, None, None)


def _dropped() -> float:
    return float(metrics.LOG_DROPPED._value.get())


def test_a_stalled_stream_drops_records_instead_of_blocking() -> None:
    stream = StalledStream()
    handler = NonBlockingHandler(stream, TextFormatter(), size=4)  # type: ignore[arg-type]
    try:
        handler.handle(_record("first"))
        assert stream.writing.wait(10)  # the writer is stuck in write()
        before = _dropped()
        for i in range(50):  # returns at once: nothing here waits on the stream
            handler.handle(_record(f"line {i}"))
        assert _dropped() - before == 50 - 4
    finally:
        stream.release.set()
        handler.close()
    text = "".join(stream.written)
    assert "first" in text
    assert "line 3" in text
    assert "line 4" not in text


def test_json_lines_carry_the_stacktrace_and_access_fields() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "x",
            logging.ERROR,
            __file__,
            1,
            "failed %s",
            ("here",),
            exc_info=sys.exc_info(),
        )
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "failed here"
    assert line["level"] == "ERROR"
    assert line["logger"] == "x"
    assert "ValueError: boom" in line["stacktrace"]
    assert line["timestamp"].endswith("Z")


def _config(tmp_path: Path, **litellm: Any) -> Path:
    raw = {
        "model_list": [
            {
                "model_name": "m",
                "litellm_params": {"model": "openai/x", "mock_response": "Hi there"},
            }
        ],
        "litellm_settings": litellm,
        "general_settings": {"master_key": MASTER_KEY, "unknown_thing": 1},
        "feathergate_settings": {"shutdown_grace_period": 1},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("how", ["flag", "config"])
async def test_every_line_is_json_from_startup_to_shutdown(tmp_path: Path, how: str) -> None:
    args = ["--log-format", "json"] if how == "flag" else []
    config = _config(tmp_path, **({"json_logs": True} if how == "config" else {}))
    async with gateway_process("--config", str(config), *args) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url) as http:
            response = await http.post(
                "/v1/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": "Hi"}]},
                headers={"authorization": f"Bearer {MASTER_KEY}", "x-request-id": "json-1"},
            )
            assert response.status_code == 200
        gateway.process.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            await gateway.read_log()
            await gateway.process.wait()
    lines = [json.loads(line) for line in bytes(gateway.log).decode().splitlines()]
    loggers = {line["logger"] for line in lines}
    assert {"feathergate", "hypercorn.error", "feathergate.access"} <= loggers
    [access] = [line for line in lines if line["logger"] == "feathergate.access"]
    assert access["request_id"] == "json-1"
    assert access["status"] == 200
    assert access["key"] == "master"
    assert access["end"] == "completed"
    warnings = [line["message"] for line in lines if line["level"] == "WARNING"]
    assert any("general_settings.unknown_thing" in w for w in warnings)
    assert MASTER_KEY not in bytes(gateway.log).decode()


async def test_text_is_the_default(tmp_path: Path) -> None:
    async with gateway_process("--config", str(_config(tmp_path))) as gateway:
        gateway.process.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            await gateway.read_log()
            await gateway.process.wait()
    text = bytes(gateway.log).decode()
    assert "feathergate: warning: general_settings.unknown_thing" in text
    assert " INFO hypercorn.error: Running on http://127.0.0.1:" in text
    assert not text.lstrip().startswith("{")
