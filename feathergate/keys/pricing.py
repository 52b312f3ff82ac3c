"""What a call costs: tokens times per-token prices.

Prices come from ``model_info`` (LiteLLM's keys) over the table shipped in
``prices.json`` (its source and date inside). Pure: :func:`cost` takes the
:class:`~feathergate.providers.base.Usage` every operation reports, where
``input`` includes cached and cache-write tokens and ``output`` includes
reasoning tokens.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from feathergate.providers.base import Usage

__all__ = ["Price", "PriceTable", "cost", "load_table", "price_for"]

DEFAULT_MAX_OUTPUT = 16384  # LiteLLM's cap when neither the request nor the model says


@dataclass(frozen=True, slots=True)
class Price:
    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None
    reasoning: float | None = None
    max_output_tokens: int | None = None
    source: str = "table"  # "table" or "model_info"

    @property
    def free(self) -> bool:
        return self.input == 0 and self.output == 0

    def worst_case(self, prompt_tokens: int, max_tokens: int | None) -> float:
        """The most a call can cost: the prompt estimate plus every output token allowed.

        ``max_tokens`` ``None``: the model's cap; 0: the call generates none (embeddings).
        """
        limit = self.max_output_tokens or DEFAULT_MAX_OUTPUT
        out = limit if max_tokens is None else min(max_tokens, limit)
        return prompt_tokens * self.input + out * max(self.output, self.reasoning or 0.0)


@dataclass(frozen=True, slots=True)
class PriceTable:
    models: Mapping[str, Price]
    source: str
    date: str

    def lookup(self, model: str) -> Price | None:
        """The entry for ``model``, or for the longest prefix of it that ends at a ``-``."""
        name = model.rsplit("/", 1)[-1]
        while name:
            price = self.models.get(name)
            if price is not None:
                return price
            cut = name.rfind("-")
            if cut <= 0:
                return None
            name = name[:cut]
        return None


def _float(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _price(data: Mapping[str, Any], source: str) -> Price | None:
    inp, out = _float(data, "input_cost_per_token"), _float(data, "output_cost_per_token")
    if inp is None and out is None:
        return None
    max_out = data.get("max_output_tokens") or data.get("max_tokens")
    return Price(
        input=inp or 0.0,
        output=out or 0.0,
        cache_read=_float(data, "cache_read_input_token_cost"),
        cache_write=_float(data, "cache_creation_input_token_cost"),
        reasoning=_float(data, "output_cost_per_reasoning_token"),
        max_output_tokens=max_out if isinstance(max_out, int) and max_out > 0 else None,
        source=source,
    )


@cache
def load_table() -> PriceTable:
    raw = json.loads(resources.files(__package__).joinpath("prices.json").read_text("utf-8"))
    models = {name: _price(entry, "table") for name, entry in raw["models"].items()}
    return PriceTable(
        {k: v for k, v in models.items() if v is not None}, raw["source"], raw["date"]
    )


def price_for(model: str, model_info: Mapping[str, Any], table: PriceTable) -> Price | None:
    """``model_info``'s prices over the table's; ``None``: unpriced (no budget reservation)."""
    listed = table.lookup(model)
    own = _price(model_info, "model_info")
    if own is None:
        if listed is not None and isinstance(model_info.get("max_output_tokens"), int):
            return Price(
                **{**_fields(listed), "max_output_tokens": model_info["max_output_tokens"]}
            )
        return listed
    if listed is None:
        return own
    merged = _fields(listed)
    for key in ("cache_read", "cache_write", "reasoning", "max_output_tokens"):
        value = getattr(own, key)
        if value is not None:
            merged[key] = value
    for key, name in (("input", "input_cost_per_token"), ("output", "output_cost_per_token")):
        if name in model_info:
            merged[key] = getattr(own, key)
    merged["source"] = "model_info"
    return Price(**merged)


def _fields(price: Price) -> dict[str, Any]:
    return {name: getattr(price, name) for name in Price.__slots__}


def cost(price: Price, usage: Usage) -> float:
    """USD for ``usage``: cached and cache-write tokens at their own prices where known."""
    read = price.cache_read if price.cache_read is not None else price.input
    write = price.cache_write if price.cache_write is not None else price.input
    cached = min(usage.cached, usage.input)
    written = min(usage.cache_write, usage.input - cached)
    fresh = usage.input - cached - written
    total = fresh * price.input + cached * read + written * write
    if price.reasoning is not None:
        reasoning = min(usage.reasoning, usage.output)
        total += reasoning * price.reasoning + (usage.output - reasoning) * price.output
    else:
        total += usage.output * price.output
    return total
