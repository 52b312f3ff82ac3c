"""Log lines: text or JSON, written by a thread of their own, dropped rather than waited for.

Every logger of the process (ours, Hypercorn's, Python's warnings) goes
through one :class:`QueueHandler` on the root logger. Handlers run in the
thread that logs, and that is the event loop's thread: a ``write`` to a pipe
nobody reads (a stalled log shipper, a full disk) would stall every request.
So the handler only puts the record on a bounded queue, and a daemon thread
formats and writes what it takes off it, joining what has piled up into one
write. When the queue is full the record is dropped and counted
(``feathergate_log_records_dropped``): a request never waits for its log line.

Formatting happens in the writer thread too (``prepare`` is a no-op): the
records are never pickled, and the event loop pays only for the record.

The JSON shape follows LiteLLM's ``json_logs`` (``message``, ``level``,
``timestamp``, ``stacktrace``), with ``logger`` and, for access lines,
their fields (:mod:`feathergate.observability.access`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import sys
import threading
import time
from logging.handlers import QueueHandler
from typing import Any, TextIO

from feathergate import metrics

__all__ = [
    "QUEUE_SIZE",
    "JsonFormatter",
    "NonBlockingHandler",
    "TextFormatter",
    "setup_logging",
]

QUEUE_SIZE = 10_000  # records; a few MB at most, seconds of a busy gateway's access log
_BATCH = 1024  # records joined into one write at most
# After the first record of a batch the writer waits this long for more: one
# wake-up (and one write) per few milliseconds of a busy access log, instead
# of one per request, each of which costs the event loop a GIL hand-off.
_LINGER = 0.005
_STOP_WAIT = 2.0  # seconds close() waits for the writer to flush


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")


class JsonFormatter(logging.Formatter):
    """One JSON object a line, whatever the record (a traceback included)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record.msg, "fields", None)
        if callable(fields):  # an access record: its fields, not only its text
            line.update(fields())
        if record.exc_info:
            line["stacktrace"] = self.formatException(record.exc_info)
        elif record.stack_info:
            line["stacktrace"] = record.stack_info
        return json.dumps(line, default=str)


def _iso(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


class NonBlockingHandler(QueueHandler):
    """Queue records for :class:`_Writer`; drop and count them when the queue is full."""

    def __init__(self, stream: TextIO, formatter: logging.Formatter, size: int = QUEUE_SIZE):
        self.records: queue.Queue[logging.LogRecord | None] = queue.Queue(size)
        super().__init__(self.records)
        self.setFormatter(formatter)
        self._writer = _Writer(self.records, stream, formatter)
        self._writer.start()

    def handle(self, record: logging.LogRecord) -> bool:
        # No filters, and the queue has its own lock: the handler's is not needed.
        self.enqueue(record)
        return True

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record  # formatted by the writer, off the event loop's thread

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.records.put_nowait(record)
        except queue.Full:
            metrics.LOG_DROPPED.inc()

    def close(self) -> None:
        """Let the writer finish what is queued, for at most a few seconds (stdout may be stuck)."""
        # Full: the writer is stuck on a write, and nothing more would get out anyway.
        with contextlib.suppress(queue.Full):
            self.records.put_nowait(None)
        self._writer.join(_STOP_WAIT)
        super().close()


class _Writer(threading.Thread):
    def __init__(
        self,
        records: queue.Queue[logging.LogRecord | None],
        stream: TextIO,
        formatter: logging.Formatter,
    ) -> None:
        super().__init__(name="feathergate-log-writer", daemon=True)
        self.records = records
        self.stream = stream
        self.formatter = formatter

    def run(self) -> None:
        records = self.records
        while True:
            batch = [records.get()]
            time.sleep(_LINGER)
            while len(batch) < _BATCH:
                try:
                    batch.append(records.get_nowait())
                except queue.Empty:
                    break
            lines = []
            stop = False
            for record in batch:
                if record is None:
                    stop = True
                    continue
                try:
                    lines.append(self.formatter.format(record) + "\n")
                except Exception:  # a bad record must not end the writer
                    lines.append(f"(unformattable log record from {record.name})\n")
            try:
                self.stream.write("".join(lines))
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed or broken stream: nowhere left to say so
            if stop:
                return


_installed: NonBlockingHandler | None = None


def setup_logging(level: str, json_logs: bool = False, stream: TextIO | None = None) -> None:
    """Send every logger through one non-blocking handler, as text or JSON lines.

    Called again (the config may ask for JSON after the first lines), it
    replaces its own handler; handlers others installed on the root stay.
    """
    global _installed
    root = logging.getLogger()
    formatter = JsonFormatter() if json_logs else TextFormatter()
    handler = NonBlockingHandler(stream or sys.stderr, formatter)
    if _installed is not None:
        root.removeHandler(_installed)
        _installed.close()
    root.addHandler(handler)
    _installed = handler
    root.setLevel(level.upper())
    logging.captureWarnings(True)
    # No format here shows them, and each costs every record a lookup.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    # httpx logs every request at INFO: a hot-path cost, and URLs are not ours to log.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # coredis logs a traceback for some failed connects, at every attempt while
    # Redis is away; feathergate.state reports each transition once instead.
    logging.getLogger("coredis").setLevel(logging.CRITICAL)
