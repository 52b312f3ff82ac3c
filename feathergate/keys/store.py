"""The key store: one schema and one set of queries over SQLite and PostgreSQL.

Blocking DB-API calls run on one worker thread per store (``trio.to_thread``
under a limiter of one), over one connection: SQLite wants a single writer,
and a gateway's writes are batches, not a stream. Nothing on the request path
awaits this module but the first sight of a key (see :mod:`.service`).

The schema is versioned in ``fg_schema`` and migrated at open, under a lock
(``BEGIN IMMEDIATE`` on SQLite, an advisory lock on Postgres) so that two
processes starting together migrate once.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import trio

from feathergate.errors import StoreConflict, StoreUnavailable
from feathergate.keys.records import KeyRecord, SpendRow, TeamRecord

__all__ = ["Change", "SpendOp", "Store", "open_store"]

T = TypeVar("T")

_KEY_COLUMNS = tuple(f.name for f in fields(KeyRecord))
_TEAM_COLUMNS = tuple(f.name for f in fields(TeamRecord))
_JSON_COLUMNS = {"models", "metadata"}
_BOOL_COLUMNS = {"blocked"}

# Each entry moves the schema one version on; never edit a released entry.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE fg_teams (
            team_id TEXT PRIMARY KEY, team_alias TEXT, models TEXT NOT NULL,
            max_budget DOUBLE PRECISION, soft_budget DOUBLE PRECISION, budget_duration TEXT,
            budget_reset_at DOUBLE PRECISION, rpm_limit BIGINT, tpm_limit BIGINT,
            max_parallel_requests BIGINT, metadata TEXT NOT NULL, blocked INTEGER NOT NULL,
            spend DOUBLE PRECISION NOT NULL, created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL)""",
        """CREATE TABLE fg_keys (
            token TEXT PRIMARY KEY, key_name TEXT NOT NULL, key_alias TEXT UNIQUE,
            expires DOUBLE PRECISION, models TEXT NOT NULL, max_budget DOUBLE PRECISION,
            soft_budget DOUBLE PRECISION, budget_duration TEXT, budget_reset_at DOUBLE PRECISION,
            rpm_limit BIGINT, tpm_limit BIGINT, max_parallel_requests BIGINT, team_id TEXT,
            metadata TEXT NOT NULL, blocked INTEGER NOT NULL, user_role TEXT,
            spend DOUBLE PRECISION NOT NULL, created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX fg_keys_team ON fg_keys (team_id)",
        """CREATE TABLE fg_key_grace (
            token TEXT PRIMARY KEY, new_token TEXT NOT NULL, until DOUBLE PRECISION NOT NULL)""",
        """CREATE TABLE fg_spend_logs (
            request_id TEXT PRIMARY KEY, api_key TEXT NOT NULL, team_id TEXT, model TEXT NOT NULL,
            call_type TEXT NOT NULL, spend DOUBLE PRECISION NOT NULL, prompt_tokens BIGINT NOT NULL,
            completion_tokens BIGINT NOT NULL, total_tokens BIGINT NOT NULL,
            start_time DOUBLE PRECISION NOT NULL, end_time DOUBLE PRECISION NOT NULL,
            status TEXT NOT NULL)""",
        "CREATE INDEX fg_spend_logs_key ON fg_spend_logs (api_key, start_time)",
        "CREATE INDEX fg_spend_logs_time ON fg_spend_logs (start_time)",
        # Every edit of a key or team, so that other processes drop what they cached.
        """CREATE TABLE fg_changes (
            id TEXT PRIMARY KEY, kind TEXT NOT NULL, ident TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX fg_changes_at ON fg_changes (at)",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)


@dataclass(frozen=True, slots=True)
class Change:
    id: str
    kind: str  # "key" or "team"
    ident: str  # the token or the team_id


@dataclass(frozen=True, slots=True)
class SpendOp:
    """One step of a write batch, applied in order: a spend row, or a budget reset."""

    row: SpendRow | None = None
    reset_kind: str | None = None  # "key" or "team"
    reset_ident: str = ""
    reset_at: float | None = None  # the next reset instant
    reset_before: float = 0.0  # only if the stored reset instant is not later than this


def _to_db(column: str, value: Any) -> Any:
    if column in _JSON_COLUMNS:
        return json.dumps(list(value) if column == "models" else value)
    if column in _BOOL_COLUMNS:
        return int(bool(value))
    return value


def _from_db(column: str, value: Any) -> Any:
    if column in _JSON_COLUMNS:
        data = json.loads(value) if value else ([] if column == "models" else {})
        return tuple(data) if column == "models" else data
    if column in _BOOL_COLUMNS:
        return bool(value)
    return value


def _record(cls: type[T], columns: Sequence[str], row: Sequence[Any]) -> T:
    return cls(**{c: _from_db(c, v) for c, v in zip(columns, row, strict=True)})


class Store:
    """A database behind one connection and one thread; every method is async."""

    def __init__(
        self,
        dialect: str,
        connect: Callable[[], Any],
        errors: tuple[type[Exception], ...],
        conflicts: tuple[type[Exception], ...],
    ) -> None:
        self.dialect = dialect
        self._connect = connect
        self._errors = errors  # the driver's: the store is down (or the query is wrong)
        self._conflicts = conflicts  # a unique constraint: the caller's mistake
        self._conn: Any = None
        self._closed = False
        self._limiter = trio.CapacityLimiter(1)

    # -- plumbing ------------------------------------------------------------------
    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgres" else sql

    async def _run(self, fn: Callable[[Any], T]) -> T:
        def call() -> T:
            if self._conn is None:
                if self._closed:
                    # A call queued behind aclose() (a background loop at shutdown)
                    # would open a connection nobody closes.
                    raise StoreUnavailable("the key store is closed")
                self._conn = self._connect()
            if self.dialect == "sqlite":
                # The write lock from the start: no upgrade deadlock between two processes.
                self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(self._conn)
                self._conn.commit()
                return result
            except BaseException:
                try:
                    self._conn.rollback()
                except Exception:
                    self._drop()
                raise

        try:
            return await trio.to_thread.run_sync(call, limiter=self._limiter)
        except self._conflicts:
            raise StoreConflict("a key or team with that identity already exists") from None
        except self._errors as exc:
            self._drop()
            raise StoreUnavailable(f"the key store is unreachable ({type(exc).__name__})") from None

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may fail too
                conn.close()

    def _q(self, conn: Any, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        cur = conn.execute(self._sql(sql), tuple(args))
        return list(cur.fetchall()) if cur.description is not None else []

    async def aclose(self) -> None:
        self._closed = True
        await trio.to_thread.run_sync(self._drop, limiter=self._limiter)

    # -- schema ----------------------------------------------------------------------
    async def migrate(self) -> int:
        """Bring the schema to :data:`SCHEMA_VERSION`; returns the version found."""

        def run(conn: Any) -> int:
            if self.dialect == "postgres":
                conn.execute("SELECT pg_advisory_xact_lock(74201911)")
            self._q(conn, "CREATE TABLE IF NOT EXISTS fg_schema (version INTEGER NOT NULL)")
            rows = self._q(conn, "SELECT version FROM fg_schema")
            found = int(rows[0][0]) if rows else 0
            if not rows:
                self._q(conn, "INSERT INTO fg_schema (version) VALUES (0)")
            for version in range(found, SCHEMA_VERSION):
                for statement in _MIGRATIONS[version]:
                    self._q(conn, statement)
                self._q(conn, "UPDATE fg_schema SET version = ?", (version + 1,))
            return found

        return await self._run(run)

    # -- keys ------------------------------------------------------------------------
    def _change(self, conn: Any, kind: str, ident: str) -> None:
        self._q(
            conn,
            "INSERT INTO fg_changes (id, kind, ident, at) VALUES (?, ?, ?, ?)",
            (secrets.token_hex(8), kind, ident, time.time()),
        )

    async def get_key(self, token: str, now: float) -> KeyRecord | None:
        """The key by hash; a regenerated key's old hash finds the new one until its grace ends."""
        cols = ", ".join(_KEY_COLUMNS)

        def run(conn: Any) -> KeyRecord | None:
            rows = self._q(conn, f"SELECT {cols} FROM fg_keys WHERE token = ?", (token,))
            if not rows:
                grace = self._q(
                    conn,
                    "SELECT new_token FROM fg_key_grace WHERE token = ? AND until > ?",
                    (token, now),
                )
                if not grace:
                    return None
                rows = self._q(conn, f"SELECT {cols} FROM fg_keys WHERE token = ?", (grace[0][0],))
                if not rows:
                    return None
            return _record(KeyRecord, _KEY_COLUMNS, rows[0])

        return await self._run(run)

    async def token_for_alias(self, alias: str) -> str | None:
        rows = await self._run(
            lambda c: self._q(c, "SELECT token FROM fg_keys WHERE key_alias = ?", (alias,))
        )
        return str(rows[0][0]) if rows else None

    async def insert_key(self, rec: KeyRecord) -> None:
        cols = ", ".join(_KEY_COLUMNS)
        marks = ", ".join("?" for _ in _KEY_COLUMNS)
        values = [_to_db(c, getattr(rec, c)) for c in _KEY_COLUMNS]

        def run(conn: Any) -> None:
            self._q(conn, f"INSERT INTO fg_keys ({cols}) VALUES ({marks})", values)
            self._change(conn, "key", rec.token)  # other processes may cache it as unknown

        await self._run(run)

    async def update_key(self, token: str, changes: Mapping[str, Any]) -> KeyRecord | None:
        cols = ", ".join(_KEY_COLUMNS)

        def run(conn: Any) -> KeyRecord | None:
            sets = {**changes, "updated_at": time.time()}
            assign = ", ".join(f"{c} = ?" for c in sets)
            values = [_to_db(c, v) for c, v in sets.items()]
            self._q(conn, f"UPDATE fg_keys SET {assign} WHERE token = ?", [*values, token])
            rows = self._q(conn, f"SELECT {cols} FROM fg_keys WHERE token = ?", (token,))
            if not rows:
                return None
            self._change(conn, "key", token)
            return _record(KeyRecord, _KEY_COLUMNS, rows[0])

        return await self._run(run)

    async def regenerate_key(
        self, old: str, new: KeyRecord, grace_until: float | None
    ) -> KeyRecord | None:
        """Move the row to a new hash; the old hash stays valid until ``grace_until``."""

        def run(conn: Any) -> KeyRecord | None:
            if not self._q(conn, "SELECT 1 FROM fg_keys WHERE token = ?", (old,)):
                return None
            self._q(
                conn,
                "UPDATE fg_keys SET token = ?, key_name = ?, updated_at = ? WHERE token = ?",
                (new.token, new.key_name, time.time(), old),
            )
            self._q(
                conn, "UPDATE fg_key_grace SET new_token = ? WHERE new_token = ?", (new.token, old)
            )
            if grace_until is not None:
                self._q(
                    conn,
                    "INSERT INTO fg_key_grace (token, new_token, until) VALUES (?, ?, ?)",
                    (old, new.token, grace_until),
                )
            self._change(conn, "key", old)
            cols = ", ".join(_KEY_COLUMNS)
            rows = self._q(conn, f"SELECT {cols} FROM fg_keys WHERE token = ?", (new.token,))
            return _record(KeyRecord, _KEY_COLUMNS, rows[0])

        return await self._run(run)

    async def delete_keys(self, tokens: Sequence[str]) -> list[str]:
        def run(conn: Any) -> list[str]:
            deleted = []
            for token in tokens:
                if self._q(conn, "SELECT 1 FROM fg_keys WHERE token = ?", (token,)):
                    self._q(conn, "DELETE FROM fg_keys WHERE token = ?", (token,))
                    self._q(conn, "DELETE FROM fg_key_grace WHERE new_token = ?", (token,))
                    self._change(conn, "key", token)
                    deleted.append(token)
            return deleted

        return await self._run(run)

    async def list_keys(
        self, filters: Mapping[str, Any], page: int, size: int
    ) -> tuple[list[KeyRecord], int]:
        cols = ", ".join(_KEY_COLUMNS)
        where = " AND ".join(f"{c} = ?" for c in filters) or "1 = 1"
        args = list(filters.values())

        def run(conn: Any) -> tuple[list[KeyRecord], int]:
            total = int(self._q(conn, f"SELECT COUNT(*) FROM fg_keys WHERE {where}", args)[0][0])
            rows = self._q(
                conn,
                f"SELECT {cols} FROM fg_keys WHERE {where} ORDER BY created_at, token "
                "LIMIT ? OFFSET ?",
                [*args, size, (page - 1) * size],
            )
            return [_record(KeyRecord, _KEY_COLUMNS, r) for r in rows], total

        return await self._run(run)

    # -- teams -----------------------------------------------------------------------
    async def get_team(self, team_id: str) -> TeamRecord | None:
        cols = ", ".join(_TEAM_COLUMNS)
        rows = await self._run(
            lambda c: self._q(c, f"SELECT {cols} FROM fg_teams WHERE team_id = ?", (team_id,))
        )
        return _record(TeamRecord, _TEAM_COLUMNS, rows[0]) if rows else None

    async def insert_team(self, rec: TeamRecord) -> None:
        cols = ", ".join(_TEAM_COLUMNS)
        marks = ", ".join("?" for _ in _TEAM_COLUMNS)
        values = [_to_db(c, getattr(rec, c)) for c in _TEAM_COLUMNS]
        await self._run(
            lambda c: self._q(c, f"INSERT INTO fg_teams ({cols}) VALUES ({marks})", values)
        )

    async def update_team(self, team_id: str, changes: Mapping[str, Any]) -> TeamRecord | None:
        cols = ", ".join(_TEAM_COLUMNS)

        def run(conn: Any) -> TeamRecord | None:
            sets = {**changes, "updated_at": time.time()}
            assign = ", ".join(f"{c} = ?" for c in sets)
            values = [_to_db(c, v) for c, v in sets.items()]
            self._q(conn, f"UPDATE fg_teams SET {assign} WHERE team_id = ?", [*values, team_id])
            rows = self._q(conn, f"SELECT {cols} FROM fg_teams WHERE team_id = ?", (team_id,))
            if not rows:
                return None
            self._change(conn, "team", team_id)
            return _record(TeamRecord, _TEAM_COLUMNS, rows[0])

        return await self._run(run)

    async def delete_teams(self, team_ids: Sequence[str]) -> list[str]:
        """Delete teams and their keys (LiteLLM deletes a team's keys with it)."""

        def run(conn: Any) -> list[str]:
            deleted = []
            for team_id in team_ids:
                if not self._q(conn, "SELECT 1 FROM fg_teams WHERE team_id = ?", (team_id,)):
                    continue
                for (token,) in self._q(
                    conn, "SELECT token FROM fg_keys WHERE team_id = ?", (team_id,)
                ):
                    self._change(conn, "key", token)
                self._q(conn, "DELETE FROM fg_keys WHERE team_id = ?", (team_id,))
                self._q(conn, "DELETE FROM fg_teams WHERE team_id = ?", (team_id,))
                self._change(conn, "team", team_id)
                deleted.append(team_id)
            return deleted

        return await self._run(run)

    async def list_teams(self) -> list[TeamRecord]:
        cols = ", ".join(_TEAM_COLUMNS)
        rows = await self._run(
            lambda c: self._q(c, f"SELECT {cols} FROM fg_teams ORDER BY created_at, team_id")
        )
        return [_record(TeamRecord, _TEAM_COLUMNS, r) for r in rows]

    # -- spend -----------------------------------------------------------------------
    async def write_spend(self, ops: Sequence[SpendOp]) -> None:
        """Apply ``ops`` in order in one transaction: rows, spend counters, budget resets."""

        def run(conn: Any) -> None:
            for op in ops:
                if op.row is not None:
                    self._write_row(conn, op.row)
                elif op.reset_kind is not None:
                    table, column = _ENTITY[op.reset_kind]
                    self._q(
                        conn,
                        f"UPDATE {table} SET spend = 0, budget_reset_at = ? WHERE {column} = ? "
                        "AND (budget_reset_at IS NULL OR budget_reset_at <= ?)",
                        (op.reset_at, op.reset_ident, op.reset_before),
                    )

        await self._run(run)

    def _write_row(self, conn: Any, row: SpendRow) -> None:
        conflict = "ON CONFLICT (request_id) DO NOTHING"
        inserted = self._q(
            conn,
            "INSERT INTO fg_spend_logs (request_id, api_key, team_id, model, call_type, spend, "
            "prompt_tokens, completion_tokens, total_tokens, start_time, end_time, status) "
            f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) {conflict} RETURNING request_id",
            (
                row.request_id,
                row.api_key,
                row.team_id,
                row.model,
                row.call_type,
                row.spend,
                row.prompt_tokens,
                row.completion_tokens,
                row.total_tokens,
                row.start_time,
                row.end_time,
                row.status,
            ),
        )
        if not inserted or not row.spend:  # a replayed batch adds nothing twice
            return
        self._q(
            conn, "UPDATE fg_keys SET spend = spend + ? WHERE token = ?", (row.spend, row.api_key)
        )
        if row.team_id is not None:
            self._q(
                conn,
                "UPDATE fg_teams SET spend = spend + ? WHERE team_id = ?",
                (row.spend, row.team_id),
            )

    async def spend_logs(
        self, filters: Mapping[str, Any], start: float | None, end: float | None
    ) -> list[SpendRow]:
        clauses = [f"{c} = ?" for c in filters]
        args: list[Any] = list(filters.values())
        if start is not None:
            clauses.append("start_time >= ?")
            args.append(start)
        if end is not None:
            clauses.append("start_time < ?")
            args.append(end)
        where = " AND ".join(clauses) or "1 = 1"
        columns = (
            "request_id, api_key, team_id, model, spend, prompt_tokens, completion_tokens, "
            "start_time, end_time, status, call_type"
        )
        rows = await self._run(
            lambda c: self._q(
                c,
                f"SELECT {columns} FROM fg_spend_logs WHERE {where} "
                "ORDER BY start_time LIMIT 10000",
                args,
            )
        )
        return [SpendRow(*r) for r in rows]

    # -- changes ---------------------------------------------------------------------
    async def changes_since(self, since: float) -> list[Change]:
        rows = await self._run(
            lambda c: self._q(c, "SELECT id, kind, ident FROM fg_changes WHERE at >= ?", (since,))
        )
        return [Change(*r) for r in rows]

    async def prune_changes(self, before: float) -> None:
        await self._run(lambda c: self._q(c, "DELETE FROM fg_changes WHERE at < ?", (before,)))


_ENTITY = {"key": ("fg_keys", "token"), "team": ("fg_teams", "team_id")}


def _sqlite(path: str) -> Store:
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)

    def connect() -> sqlite3.Connection:
        # Autocommit mode, and explicit transactions: see Store._run.
        conn = sqlite3.connect(path, timeout=10, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    return Store("sqlite", connect, (sqlite3.Error,), (sqlite3.IntegrityError,))


def _postgres(url: str) -> Store:
    import psycopg

    def connect() -> Any:
        return psycopg.connect(url, connect_timeout=3, autocommit=False)

    return Store("postgres", connect, (psycopg.Error,), (psycopg.errors.IntegrityError,))


def open_store(url: str) -> Store:
    """A store for ``sqlite:///path`` or ``postgresql://...`` (``postgres://`` too)."""
    if url.startswith("sqlite:///"):
        return _sqlite(url[len("sqlite:///") :] or ":memory:")
    if url.startswith(("postgresql://", "postgres://")):
        return _postgres(url)
    raise ValueError("database_url must start with postgresql:// or sqlite:///")
