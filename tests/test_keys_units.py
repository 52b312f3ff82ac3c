"""Pure parts of virtual keys: durations on a fake clock, prices, reservations, headers."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from feathergate.endpoints import ROUTES
from feathergate.keys.budgets import BudgetLimit, MemoryLedger, Refusal, Reservation
from feathergate.keys.durations import Duration, add_duration, next_reset, parse_duration
from feathergate.keys.pricing import DEFAULT_MAX_OUTPUT, Price, cost, load_table, price_for
from feathergate.keys.service import read_key
from feathergate.keys.tokens import generate_key, hash_key, key_name, token_of
from feathergate.providers.base import Usage, usage_of

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", Duration(30, "s")),
        ("5m", Duration(5, "m")),
        ("30min", Duration(30, "m")),
        ("1hr", Duration(1, "h")),
        ("24h", Duration(24, "h")),
        ("7d", Duration(7, "d")),
        ("2w", Duration(2, "w")),
        ("1mo", Duration(1, "mo")),
    ],
)
def test_durations_parse_litellm_units(text: str, expected: Duration) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["30", "", "1y", "0d", "-1d", "d"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


# A Wednesday afternoon.
NOW = datetime(2026, 3, 18, 15, 42, 7, tzinfo=UTC)


@pytest.mark.parametrize(
    ("duration", "expected"),
    [
        ("1d", datetime(2026, 3, 19, tzinfo=UTC)),  # next midnight
        ("7d", datetime(2026, 3, 23, tzinfo=UTC)),  # next Monday
        ("1w", datetime(2026, 3, 23, tzinfo=UTC)),
        ("30d", datetime(2026, 4, 1, tzinfo=UTC)),  # the 1st of next month
        ("1mo", datetime(2026, 4, 1, tzinfo=UTC)),
        ("3d", datetime(2026, 3, 21, tzinfo=UTC)),  # midnight + 3 days
        ("1h", datetime(2026, 3, 18, 16, tzinfo=UTC)),  # next hour on the clock
        ("6h", datetime(2026, 3, 18, 18, tzinfo=UTC)),
        ("15m", datetime(2026, 3, 18, 15, 45, tzinfo=UTC)),
        ("30s", datetime(2026, 3, 18, 15, 42, 30, tzinfo=UTC)),
        ("7h", datetime(2026, 3, 18, 21, tzinfo=UTC)),  # steps from midnight: 0, 7, 14, 21
    ],
)
def test_resets_align_to_the_calendar(duration: str, expected: datetime) -> None:
    assert next_reset(NOW, parse_duration(duration), UTC) == expected


def test_resets_follow_the_configured_time_zone() -> None:
    # 23:30 UTC on Dec 31 is already Jan 1 in Berlin: the month boundary is Feb 1 there.
    late = datetime(2025, 12, 31, 23, 30, tzinfo=UTC)
    assert next_reset(late, parse_duration("1mo"), UTC) == datetime(2026, 1, 1, tzinfo=UTC)
    assert next_reset(late, parse_duration("1mo"), BERLIN) == datetime(2026, 2, 1, tzinfo=BERLIN)
    assert next_reset(late, parse_duration("1d"), BERLIN) == datetime(2026, 1, 2, tzinfo=BERLIN)
    # Across the spring DST change, midnight stays midnight on the wall clock.
    before = datetime(2026, 3, 28, 12, tzinfo=BERLIN)
    assert next_reset(before, parse_duration("1d"), BERLIN).hour == 0


def test_exactly_on_a_boundary_resets_at_the_next_one() -> None:
    midnight = datetime(2026, 3, 19, tzinfo=UTC)
    assert next_reset(midnight, parse_duration("1d"), UTC) == datetime(2026, 3, 20, tzinfo=UTC)


def test_key_durations_are_exact_and_months_are_calendar_months() -> None:
    assert add_duration(NOW, parse_duration("1h")) == datetime(2026, 3, 18, 16, 42, 7, tzinfo=UTC)
    jan31 = datetime(2026, 1, 31, tzinfo=UTC)
    assert add_duration(jan31, parse_duration("1mo")) == datetime(2026, 2, 28, tzinfo=UTC)


def test_key_format_and_hash() -> None:
    raw = generate_key()
    assert raw.startswith("sk-")
    assert len(raw) == 25
    assert hash_key(raw) == token_of(raw)
    assert token_of(hash_key(raw)) == hash_key(raw)
    assert key_name(raw) == f"sk-...{raw[-4:]}"
    assert hash_key("sk-1234") == "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"


def test_header_precedence_is_litellms() -> None:
    headers = [
        (b"x-goog-api-key", b"sk-goog"),
        (b"x-api-key", b"sk-anthropic"),
        (b"api-key", b"sk-azure"),
        (b"authorization", b"Bearer sk-bearer"),
        (b"x-litellm-api-key", b"Bearer sk-litellm"),
    ]
    assert read_key(headers) == "sk-litellm"
    assert read_key(headers[:4]) == "sk-bearer"
    assert read_key(headers[:3]) == "sk-azure"
    assert read_key(headers[:2]) == "sk-anthropic"
    assert read_key(headers[:1]) == "sk-goog"
    assert read_key([(b"authorization", b"Basic abc"), (b"x-api-key", b"sk-x")]) == "sk-x"
    assert read_key([(b"x-litellm-api-key", b"sk-bare")]) == "sk-bare"
    assert read_key([]) is None


def test_cost_prices_cached_reasoning_and_cache_writes() -> None:
    price = Price(input=1e-6, output=4e-6, cache_read=0.1e-6, cache_write=1.25e-6)
    usage = Usage(input=1000, output=200, cached=600, cache_write=100, reasoning=50)
    expected = 300 * 1e-6 + 600 * 0.1e-6 + 100 * 1.25e-6 + 200 * 4e-6
    assert cost(price, usage) == pytest.approx(expected)
    with_reasoning = Price(input=1e-6, output=4e-6, reasoning=8e-6)
    assert cost(with_reasoning, Usage(input=0, output=200, reasoning=50)) == pytest.approx(
        150 * 4e-6 + 50 * 8e-6
    )


def test_embeddings_reserve_for_input_tokens_alone() -> None:
    price = Price(input=0.125, output=1.0)
    assert price.worst_case(8, 0) == 1.0  # the endpoint row generates nothing
    assert price.worst_case(8, None) == 1.0 + DEFAULT_MAX_OUTPUT
    assert price.worst_case(8, 2) == 3.0
    assert not ROUTES["/v1/embeddings"].generates
    assert ROUTES["/v1/completions"].generates
    assert ROUTES["/v1/chat/completions"].generates


def test_usage_of_reads_openai_usage_details() -> None:
    usage = usage_of(
        {
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 2},
            "completion_tokens_details": {"reasoning_tokens": 3},
        }
    )
    assert usage == Usage(input=10, output=5, cached=4, cache_write=2, reasoning=3)
    assert usage_of(None) is None
    # A negative count (a broken upstream) bills nothing rather than paying back.
    assert usage_of({"prompt_tokens": -5, "completion_tokens": 2}) == Usage(0, 2)


def test_price_table_and_model_info_override() -> None:
    table = load_table()
    assert table.date
    assert table.source
    gpt = price_for("gpt-4o-2024-08-06", {}, table)
    assert gpt is not None
    assert gpt == table.models["gpt-4o"]
    assert price_for("gpt-4o-mini", {}, table) == table.models["gpt-4o-mini"]
    assert price_for("my-local-llama", {}, table) is None
    own = price_for("gpt-4o", {"input_cost_per_token": 0.5, "max_output_tokens": 10}, table)
    assert own is not None
    assert (own.input, own.output, own.max_output_tokens) == (0.5, gpt.output, 10)
    assert own.source == "model_info"
    local = price_for("llama", {"input_cost_per_token": 0, "output_cost_per_token": 0}, table)
    assert local is not None
    assert local.free


def test_worst_case_uses_max_tokens_or_the_models_limit() -> None:
    price = Price(input=1.0, output=2.0, max_output_tokens=100)
    assert price.worst_case(10, 5) == 10 + 10
    assert price.worst_case(10, None) == 10 + 200
    assert price.worst_case(10, 10_000) == 10 + 200


def _limit(max_budget: float | None, kind: str = "key", duration: str | None = None) -> BudgetLimit:
    return BudgetLimit(kind, kind + "-1", max_budget, duration, 0.0, None)


def test_reservations_never_let_concurrent_calls_overshoot_together() -> None:
    ledger = MemoryLedger(UTC)
    key = _limit(5.0)
    held: list[Reservation] = []
    refused = 0
    for _ in range(20):  # 20 calls in flight at once, each worst case 1.0
        result = ledger.reserve([key], 1.0, 0.0)
        if isinstance(result, Refusal):
            refused += 1
        else:
            held.append(result)
    assert len(held) == 5
    assert refused == 15
    for reservation in held:
        ledger.settle(reservation, 1.3)  # each cost more than its worst case estimate
    assert ledger.spend("key", "key-1") == pytest.approx(6.5)
    assert isinstance(ledger.reserve([key], 1.0, 0.0), Refusal)


def test_the_last_call_gets_the_remaining_headroom_and_both_budgets_count() -> None:
    ledger = MemoryLedger(UTC)
    key, team = _limit(10.0), _limit(2.5, "team")
    first = ledger.reserve([key, team], 2.0, 0.0)
    assert isinstance(first, Reservation)
    second = ledger.reserve([key, team], 2.0, 0.0)
    assert isinstance(second, Reservation)
    assert second.amount == pytest.approx(0.5)  # shrunk to the team's headroom
    refusal = ledger.reserve([key, team], 2.0, 0.0)
    assert isinstance(refusal, Refusal)
    assert refusal.limit.kind == "team"
    ledger.settle(first, 0.0)  # a failed call settles to nothing
    ledger.settle(second, 0.1)
    assert ledger.spend("team", "team-1") == pytest.approx(0.1)
    assert isinstance(ledger.reserve([key, team], 2.0, 0.0), Reservation)


def test_a_budget_period_rolls_over_lazily_at_the_first_call_after_it() -> None:
    ledger = MemoryLedger(UTC)
    day = _limit(1.0, duration="1d")
    start = NOW.timestamp()
    first = ledger.reserve([day], 0.6, start)
    assert isinstance(first, Reservation)
    ledger.settle(first, 1.0)
    assert isinstance(ledger.reserve([day], 0.1, start + 3600), Refusal)
    midnight = datetime(2026, 3, 19, tzinfo=UTC).timestamp()
    assert isinstance(ledger.reserve([day], 0.1, midnight - 1), Refusal)
    rolled = ledger.reserve([day], 0.1, midnight)
    assert isinstance(rolled, Reservation)
    assert [(r[1], r[2]) for r in rolled.resets] == [
        (datetime(2026, 3, 20, tzinfo=UTC).timestamp(), midnight)
    ]
    assert ledger.spend("key", "key-1") == 0.0


def test_the_key_stores_password_is_masked_in_logged_tracebacks() -> None:
    from feathergate.config import parse_config
    from feathergate.lastresort import secrets_of

    config = parse_config(
        {
            "model_list": [],
            "general_settings": {"database_url": "postgresql://fg:s3cret-db-pass@db/fg"},
        },
        {},
    )
    assert "s3cret-db-pass" in secrets_of(config)
    assert "s3cret-db-pass" not in repr(config)
