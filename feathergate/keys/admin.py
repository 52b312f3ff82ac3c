"""The management API in LiteLLM's shapes: ``/key/*``, ``/team/*``, ``/spend/logs``,
``/global/spend/report``. A Quart blueprint; every route needs the master key or a
key with ``user_role: proxy_admin`` (``/key/info`` also answers a key about itself).

Messages are plain sentences, never Python reprs; keys appear only as hashes or
``sk-...<last4>``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import fields
from datetime import UTC, datetime
from functools import wraps
from typing import Any

from quart import Blueprint, Response, request

from feathergate.errors import (
    GatewayError,
    InvalidRequest,
    ManagementError,
    NotFound,
    error_response,
)
from feathergate.ids import REQUEST_ID
from feathergate.keys.budgets import period_end
from feathergate.keys.durations import add_duration, parse_duration
from feathergate.keys.records import KeyRecord, SpendRow, TeamRecord
from feathergate.keys.service import KeyService, Principal
from feathergate.keys.tokens import (
    MIN_CUSTOM_KEY_LENGTH,
    generate_key,
    hash_key,
    key_name,
    token_of,
)

__all__ = ["admin_blueprint"]

Handler = Callable[..., Awaitable[Any]]

_LIMIT_FIELDS = ("rpm_limit", "tpm_limit", "max_parallel_requests")
_MONEY_FIELDS = ("max_budget", "soft_budget")


def _json(data: Any, status: int = 200) -> Response:
    import json

    return Response(json.dumps(data), status=status, content_type="application/json")


def _error(err: GatewayError) -> Response:
    found = request.scope.get(REQUEST_ID)  # the gateway put it there, for every error body
    status, headers, body = error_response(err, found if isinstance(found, str) else None)
    response = Response(body, status=status, content_type="application/json")
    for name, value in headers[2:]:
        response.headers[name.decode()] = value.decode()
    return response


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()


_TIMES = frozenset({"expires", "budget_reset_at", "created_at", "updated_at"})


def _record_json(rec: KeyRecord | TeamRecord) -> dict[str, Any]:
    """A key or a team as LiteLLM's API shows it: every field in order, times as ISO 8601."""
    out: dict[str, Any] = {}
    for f in fields(rec):
        value = getattr(rec, f.name)
        if f.name in _TIMES:
            value = _iso(value)
        elif f.name == "models":
            value = list(value)
        out[f.name] = value
    return out


def _row_json(row: SpendRow) -> dict[str, Any]:
    return {
        "request_id": row.request_id,
        "call_type": row.call_type,
        "api_key": row.api_key,
        "team_id": row.team_id,
        "model": row.model,
        "spend": row.spend,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "total_tokens": row.total_tokens,
        "startTime": _iso(row.start_time),
        "endTime": _iso(row.end_time),
        "status": row.status,
    }


# -- validation ------------------------------------------------------------------------


def _number(body: Mapping[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"{name} must be a number", param=name)
    if value < 0:
        raise InvalidRequest(f"{name} cannot be negative. Received: {value}", param=name)
    return float(value)


def _count(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRequest(f"{name} must be a whole number >= 0", param=name)
    return value


def _duration(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    try:
        return str(parse_duration(str(value)))
    except ValueError as exc:
        raise InvalidRequest(str(exc), param=name) from None


def _common(body: Mapping[str, Any]) -> dict[str, Any]:
    """The fields keys and teams share, validated; only those present in ``body``."""
    out: dict[str, Any] = {}
    if "models" in body:
        models = body["models"]
        if models is None:
            models = []
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            raise InvalidRequest("models must be a list of model names", param="models")
        out["models"] = tuple(models)
    for name in _MONEY_FIELDS:
        if name in body:
            out[name] = _number(body, name)
    for name in _LIMIT_FIELDS:
        if name in body:
            out[name] = _count(body, name)
    if "budget_duration" in body:
        out["budget_duration"] = _duration(body, "budget_duration")
    if "metadata" in body:
        metadata = body["metadata"] or {}
        if not isinstance(metadata, dict):
            raise InvalidRequest("metadata must be an object", param="metadata")
        out["metadata"] = metadata
    if "blocked" in body:
        if not isinstance(body["blocked"], bool | None):
            raise InvalidRequest("blocked must be true or false", param="blocked")
        out["blocked"] = bool(body["blocked"])
    return out


def _text(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string", param=name)
    return value


def _expires(body: Mapping[str, Any], now: float) -> float | None:
    value = body.get("duration")
    if value is None or value == "-1":
        return None
    try:
        duration = parse_duration(str(value))
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="duration") from None
    return add_duration(datetime.fromtimestamp(now, UTC), duration).timestamp()


def _timestamp(value: str | None, name: str, *, end: bool = False) -> float | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(
            f"{name} must be a date (YYYY-MM-DD) or an ISO time", param=name
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    stamp = moment.timestamp()
    if end and len(value) == 10:  # a whole day: up to its end
        stamp += 86400
    return stamp


# -- the blueprint -------------------------------------------------------------------------


def admin_blueprint(service: Callable[[], KeyService | None]) -> Blueprint:
    """The routes; ``service()`` is the running key service (None: no key store)."""
    bp = Blueprint("keys_admin", __name__)

    def route(admin: bool = True) -> Callable[[Handler], Handler]:
        def wrap(handler: Handler) -> Handler:
            @wraps(handler)
            async def run(*args: Any, **kwargs: Any) -> Any:
                svc = service()
                try:
                    if svc is None:
                        raise ManagementError(
                            400,
                            "no_db_connection",
                            "No connected db. Set general_settings.master_key (a SQLite store "
                            "beside the config) or general_settings.database_url.",
                        )
                    headers = [
                        (k.encode("latin-1"), v.encode("latin-1"))
                        for k, v in request.headers.items()
                    ]
                    caller = await svc.identify(headers)
                    if admin and not caller.admin:
                        raise ManagementError(
                            403,
                            "auth_error",
                            f"Only the master key or an admin key may call {request.path}.",
                        )
                    return await handler(svc, caller, *args, **kwargs)
                except GatewayError as err:
                    return _error(err)

            return run

        return wrap

    async def body() -> dict[str, Any]:
        data = await request.get_json(force=True, silent=True)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InvalidRequest("the request body must be a JSON object")
        return data

    async def team_or_400(svc: KeyService, team_id: str | None) -> None:
        if team_id is not None and await svc.store.get_team(team_id) is None:
            raise InvalidRequest(f"Team not found for team_id={team_id}", param="team_id")

    async def alias_free(svc: KeyService, alias: str | None, token: str | None = None) -> None:
        if alias is not None:
            owner = await svc.store.token_for_alias(alias)
            if owner is not None and owner != token:
                raise InvalidRequest(f"Key with alias '{alias}' already exists.", param="key_alias")

    def key_fields(data: Mapping[str, Any], now: float) -> dict[str, Any]:
        fields = _common(data)
        for name in ("key_alias", "team_id", "user_role"):
            if name in data:
                fields[name] = _text(data, name)
        if fields.get("user_role") not in (None, "proxy_admin", "internal_user"):
            raise InvalidRequest(
                "user_role must be proxy_admin or internal_user", param="user_role"
            )
        if "duration" in data:
            fields["expires"] = _expires(data, now)
        if "spend" in data:
            fields["spend"] = _number(data, "spend") or 0.0
        if fields.get("budget_duration"):
            fields["budget_reset_at"] = period_end(now, fields["budget_duration"], svc_tz())
        elif "budget_duration" in fields:
            fields["budget_reset_at"] = None
        return fields

    def svc_tz() -> Any:
        svc = service()
        assert svc is not None
        return svc.settings.timezone

    async def find_key(svc: KeyService, value: Any) -> KeyRecord:
        if not isinstance(value, str) or not value:
            raise InvalidRequest("key is required: the key or its hash", param="key")
        record = await svc.store.get_key(token_of(value), svc.wall())
        if record is None:
            raise NotFound("Key not found in database.")
        return record

    # -- keys --------------------------------------------------------------------------
    @bp.post("/key/generate")
    @route()
    async def key_generate(svc: KeyService, caller: Principal) -> Any:
        data = await body()
        now = svc.wall()
        raw = data.get("key")
        if raw is None:
            raw = generate_key()
        elif (
            not isinstance(raw, str)
            or not raw.startswith("sk-")
            or len(raw) < MIN_CUSTOM_KEY_LENGTH
        ):
            raise InvalidRequest(
                f"a custom key must start with 'sk-' and be at least {MIN_CUSTOM_KEY_LENGTH} "
                "characters long",
                param="key",
            )
        fields = key_fields(data, now)
        await team_or_400(svc, fields.get("team_id"))
        await alias_free(svc, fields.get("key_alias"))
        record = KeyRecord(
            token=hash_key(raw),
            key_name=key_name(raw),
            created_at=now,
            updated_at=now,
            **fields,
        )
        await svc.store.insert_key(record)
        svc.invalidate("key", record.token)
        out = {**{k: v for k, v in data.items() if k != "key"}, **_record_json(record)}
        return _json(
            {**out, "key": raw, "token_id": record.token, "duration": data.get("duration")}
        )

    @bp.get("/key/info")
    @route(admin=False)
    async def key_info(svc: KeyService, caller: Principal) -> Any:
        value = request.args.get("key")
        if value is None:
            if caller.key is None:
                raise InvalidRequest("key is required with the master key", param="key")
            token = caller.key.token
        else:
            token = token_of(value)
        if not caller.admin and (caller.key is None or caller.key.token != token):
            raise ManagementError(403, "auth_error", "A key may only read its own info.")
        await svc.flush()
        record = await svc.store.get_key(token, svc.wall())
        if record is None:
            raise NotFound("Key not found in database.")
        info = _record_json(record)
        info.pop("token")
        return _json({"key": value if value is not None else record.key_name, "info": info})

    @bp.post("/key/update")
    @route()
    async def key_update(svc: KeyService, caller: Principal) -> Any:
        data = await body()
        record = await find_key(svc, data.get("key"))
        fields = key_fields({k: v for k, v in data.items() if k != "key"}, svc.wall())
        if "team_id" in fields:
            await team_or_400(svc, fields["team_id"])
        if "key_alias" in fields:
            await alias_free(svc, fields["key_alias"], record.token)
        if "spend" in fields:
            await svc.flush()  # the edit replaces what was counted so far
        updated = await svc.store.update_key(record.token, fields)
        if updated is None:
            raise NotFound("Key not found in database.")
        svc.invalidate("key", updated.token)
        svc.put_key(updated)
        return _json({"key": data["key"], **_record_json(updated)})

    async def set_blocked(svc: KeyService, blocked: bool) -> Any:
        data = await body()
        record = await find_key(svc, data.get("key"))
        updated = await svc.store.update_key(record.token, {"blocked": blocked})
        if updated is None:
            raise NotFound("Key not found in database.")
        svc.invalidate("key", updated.token)
        svc.put_key(updated)
        return _json(_record_json(updated))

    @bp.post("/key/block")
    @route()
    async def key_block(svc: KeyService, caller: Principal) -> Any:
        return await set_blocked(svc, True)

    @bp.post("/key/unblock")
    @route()
    async def key_unblock(svc: KeyService, caller: Principal) -> Any:
        return await set_blocked(svc, False)

    @bp.post("/key/delete")
    @route()
    async def key_delete(svc: KeyService, caller: Principal) -> Any:
        data = await body()
        keys, aliases = data.get("keys"), data.get("key_aliases")
        if keys is None and aliases is None:
            raise InvalidRequest("send keys (keys or hashes) or key_aliases", param="keys")
        passed: list[str] = []
        tokens: list[str] = []
        for value in keys or []:
            if not isinstance(value, str):
                raise InvalidRequest("keys must be a list of strings", param="keys")
            passed.append(value)
            tokens.append(token_of(value))
        for alias in aliases or []:
            if not isinstance(alias, str):
                raise InvalidRequest("key_aliases must be a list of strings", param="key_aliases")
            token = await svc.store.token_for_alias(alias)
            if token is not None:
                passed.append(alias)
                tokens.append(token)
        deleted = set(await svc.store.delete_keys(tokens))
        if not deleted:
            raise NotFound("No keys found to delete.")
        for token in deleted:
            svc.invalidate("key", token)
        return _json(
            {"deleted_keys": [p for p, t in zip(passed, tokens, strict=True) if t in deleted]}
        )

    @bp.get("/key/list")
    @route()
    async def key_list(svc: KeyService, caller: Principal) -> Any:
        args = request.args
        try:
            page = int(args.get("page", 1))
            size = int(args.get("size", 10))
        except ValueError:
            raise InvalidRequest("page and size must be whole numbers") from None
        if page < 1 or not 1 <= size <= 100:
            raise InvalidRequest("page must be >= 1 and size between 1 and 100", param="size")
        filters = {
            column: args[name]
            for name, column in (
                ("team_id", "team_id"),
                ("key_alias", "key_alias"),
                ("key_hash", "token"),
            )
            if args.get(name)
        }
        await svc.flush()
        records, total = await svc.store.list_keys(filters, page, size)
        full = args.get("return_full_object", "false").lower() == "true"
        return _json(
            {
                "keys": [_record_json(r) if full else r.token for r in records],
                "total_count": total,
                "current_page": page,
                "total_pages": max(1, -(-total // size)),
            }
        )

    async def regenerate(svc: KeyService, value: Any) -> Any:
        data = await body()
        record = await find_key(svc, value if value is not None else data.get("key"))
        raw = data.get("new_key") or generate_key()
        if (
            not isinstance(raw, str)
            or not raw.startswith("sk-")
            or len(raw) < MIN_CUSTOM_KEY_LENGTH
        ):
            raise InvalidRequest("new_key must start with 'sk-' and be 16 characters or more")
        now = svc.wall()
        grace_until = None
        if data.get("grace_period"):
            grace = _duration(data, "grace_period")
            assert grace is not None
            grace_until = add_duration(
                datetime.fromtimestamp(now, UTC), parse_duration(grace)
            ).timestamp()
        fresh = KeyRecord(token=hash_key(raw), key_name=key_name(raw))
        moved = await svc.store.regenerate_key(record.token, fresh, grace_until)
        if moved is None:
            raise NotFound("Key not found in database.")
        changes = {k: v for k, v in key_fields(data, now).items()}
        if changes:
            moved = await svc.store.update_key(moved.token, changes) or moved
        svc.invalidate("key", record.token)
        svc.ledger.forget("key", record.token)
        svc.put_key(moved)
        return _json({**_record_json(moved), "key": raw, "token_id": moved.token})

    @bp.post("/key/regenerate")
    @route()
    async def key_regenerate(svc: KeyService, caller: Principal) -> Any:
        return await regenerate(svc, None)

    @bp.post("/key/<path:key>/regenerate")
    @route()
    async def key_regenerate_path(svc: KeyService, caller: Principal, key: str) -> Any:
        return await regenerate(svc, key)

    # -- teams -------------------------------------------------------------------------
    def team_fields(data: Mapping[str, Any], now: float) -> dict[str, Any]:
        fields = _common(data)
        if "team_alias" in data:
            fields["team_alias"] = _text(data, "team_alias")
        if fields.get("budget_duration"):
            fields["budget_reset_at"] = period_end(now, fields["budget_duration"], svc_tz())
        elif "budget_duration" in fields:
            fields["budget_reset_at"] = None
        return fields

    @bp.post("/team/new")
    @route()
    async def team_new(svc: KeyService, caller: Principal) -> Any:
        import uuid

        data = await body()
        now = svc.wall()
        team_id = _text(data, "team_id") or str(uuid.uuid4())
        if await svc.store.get_team(team_id) is not None:
            raise InvalidRequest(
                f"Team id = {team_id} already exists. Choose another.", param="team_id"
            )
        record = TeamRecord(
            team_id=team_id, created_at=now, updated_at=now, **team_fields(data, now)
        )
        await svc.store.insert_team(record)
        svc.invalidate("team", team_id)
        return _json(_record_json(record))

    async def find_team(svc: KeyService, team_id: Any) -> TeamRecord:
        if not isinstance(team_id, str) or not team_id:
            raise InvalidRequest("team_id is required", param="team_id")
        record = await svc.store.get_team(team_id)
        if record is None:
            raise NotFound(f"Team not found, passed team_id={team_id}")
        return record

    @bp.get("/team/info")
    @route()
    async def team_info(svc: KeyService, caller: Principal) -> Any:
        await svc.flush()
        record = await find_team(svc, request.args.get("team_id"))
        keys, _ = await svc.store.list_keys({"team_id": record.team_id}, 1, 1000)
        return _json(
            {
                "team_id": record.team_id,
                "team_info": _record_json(record),
                "keys": [_record_json(k) for k in keys],
                "team_memberships": [],
            }
        )

    @bp.post("/team/update")
    @route()
    async def team_update(svc: KeyService, caller: Principal) -> Any:
        data = await body()
        record = await find_team(svc, data.get("team_id"))
        fields = team_fields({k: v for k, v in data.items() if k != "team_id"}, svc.wall())
        updated = await svc.store.update_team(record.team_id, fields)
        if updated is None:
            raise NotFound(f"Team not found, passed team_id={record.team_id}")
        svc.invalidate("team", updated.team_id)
        svc.put_team(updated)
        return _json({"team_id": updated.team_id, "data": _record_json(updated)})

    @bp.post("/team/delete")
    @route()
    async def team_delete(svc: KeyService, caller: Principal) -> Any:
        data = await body()
        ids = data.get("team_ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise InvalidRequest("team_ids must be a non-empty list of team ids", param="team_ids")
        for team_id in ids:
            await find_team(svc, team_id)
        keys = [
            k.token for t in ids for k in (await svc.store.list_keys({"team_id": t}, 1, 100000))[0]
        ]
        deleted = await svc.store.delete_teams(ids)
        for token in keys:
            svc.invalidate("key", token)
        for team_id in deleted:
            svc.invalidate("team", team_id)
        return _json({"deleted_teams": deleted})

    @bp.get("/team/list")
    @route()
    async def team_list(svc: KeyService, caller: Principal) -> Any:
        await svc.flush()
        return _json([_record_json(t) for t in await svc.store.list_teams()])

    # -- spend -------------------------------------------------------------------------
    @bp.get("/spend/logs")
    @route()
    async def spend_logs(svc: KeyService, caller: Principal) -> Any:
        args = request.args
        filters: dict[str, Any] = {}
        if args.get("api_key"):
            filters["api_key"] = token_of(args["api_key"])
        if args.get("request_id"):
            filters["request_id"] = args["request_id"]
        start = _timestamp(args.get("start_date"), "start_date")
        end = _timestamp(args.get("end_date"), "end_date", end=True)
        await svc.flush()
        rows = await svc.store.spend_logs(filters, start, end)
        summarize = args.get("summarize", "true").lower() == "true"
        if not (summarize and start is not None and end is not None):
            return _json([_row_json(r) for r in rows])
        days: dict[str, dict[str, Any]] = {}
        for row in rows:
            day = datetime.fromtimestamp(row.start_time, UTC).date().isoformat()
            entry = days.setdefault(
                day,
                {
                    "startTime": day,
                    "spend": 0.0,
                    "models": defaultdict(float),
                    "api_keys": defaultdict(float),
                },
            )
            entry["spend"] += row.spend
            entry["models"][row.model] += row.spend
            entry["api_keys"][row.api_key] += row.spend
        return _json(
            [
                {**d, "models": dict(d["models"]), "api_keys": dict(d["api_keys"])}
                for d in days.values()
            ]
        )

    @bp.get("/global/spend/report")
    @route()
    async def spend_report(svc: KeyService, caller: Principal) -> Any:
        args = request.args
        group_by = args.get("group_by", "team")
        if group_by not in ("team", "api_key", "model"):
            raise InvalidRequest("group_by must be team, api_key or model", param="group_by")
        start = _timestamp(args.get("start_date"), "start_date")
        end = _timestamp(args.get("end_date"), "end_date", end=True)
        await svc.flush()
        rows = await svc.store.spend_logs({}, start, end)
        return _json(_report(rows, group_by))

    return bp


def _report(rows: list[SpendRow], group_by: str) -> list[dict[str, Any]]:
    if group_by == "team":
        days: dict[str, dict[str, dict[tuple[str, str], list[float]]]] = defaultdict(
            lambda: defaultdict(dict)
        )
        for row in rows:
            day = datetime.fromtimestamp(row.start_time, UTC).date().isoformat()
            detail = days[day][row.team_id or "Unassigned Team"]
            totals = detail.setdefault((row.model, row.api_key), [0.0, 0.0])
            totals[0] += row.spend
            totals[1] += row.total_tokens
        return [
            {
                "group_by_day": day,
                "teams": [
                    {
                        "team_name": team,
                        "total_spend": sum(t[0] for t in detail.values()),
                        "metadata": [
                            {"model": m, "api_key": k, "spend": t[0], "total_tokens": int(t[1])}
                            for (m, k), t in detail.items()
                        ],
                    }
                    for team, detail in teams.items()
                ],
            }
            for day, teams in sorted(days.items())
        ]
    field = "api_key" if group_by == "api_key" else "model"
    groups: dict[str, dict[str, Any]] = {}
    for row in rows:
        name = row.api_key if field == "api_key" else row.model
        entry = groups.setdefault(
            name,
            {
                field: name,
                "total_cost": 0.0,
                "total_input_tokens": 0,
                "total_output_tokens": 0,
                "model_details": defaultdict(float),
            },
        )
        entry["total_cost"] += row.spend
        entry["total_input_tokens"] += row.prompt_tokens
        entry["total_output_tokens"] += row.completion_tokens
        entry["model_details"][row.model if field == "api_key" else row.api_key] += row.spend
    detail_name = "model" if field == "api_key" else "api_key"
    return [
        {
            **g,
            "model_details": [{detail_name: n, "spend": s} for n, s in g["model_details"].items()],
        }
        for g in groups.values()
    ]
