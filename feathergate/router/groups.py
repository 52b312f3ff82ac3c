"""Which deployments may serve a requested model name, wildcards included.

Entries sharing a ``model_name`` form a group. A ``model_name`` with ``*``
(``anthropic/*``, ``openai/gpt-*``, ``*``) is a pattern: an exact name always
wins over patterns, and among patterns the most specific one (most literal
characters, then fewest wildcards, then config order) wins, as in LiteLLM's
pattern router. What each ``*`` matched replaces the ``*`` of the
deployment's upstream model, so ``anthropic/*`` -> ``anthropic/*`` sends
``anthropic/claude-x`` upstream as ``claude-x``, and ``*`` -> ``openai/*``
sends ``gpt-4o`` as ``gpt-4o``. An upstream model without ``*`` is used as is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from feathergate.config import Deployment

__all__ = ["Group", "ModelTable", "usable"]


@dataclass(frozen=True, slots=True)
class Group:
    name: str  # the shared ``model_name``: a concrete name or a pattern
    deployments: tuple[Deployment, ...]


@dataclass(frozen=True, slots=True)
class _Pattern:
    name: str
    regex: re.Pattern[str]
    deployments: tuple[Deployment, ...]


def usable(dep: Deployment) -> bool:
    """Whether a request to ``dep`` can reach an upstream at all."""
    return dep.unavailable is None and (dep.missing_var is None or dep.mock_response is not None)


def _group_members(deps: list[Deployment]) -> tuple[Deployment, ...]:
    # A deployment that can only answer with a config error (unsupported
    # provider, unset key) is left out while a sibling can serve; alone, it
    # stays so the client sees that error instead of a bare 404.
    good = [d for d in deps if usable(d)]
    return tuple(good or deps)


def _specificity(pattern: str) -> tuple[int, int]:
    return len(pattern) - pattern.count("*"), -pattern.count("*")


def _concrete(dep: Deployment, segments: Iterable[str]) -> Deployment:
    model = dep.model
    last = ""
    for segment in segments:
        model = model.replace("*", segment, 1)
        last = segment
    # More stars upstream than in the pattern: repeat the last segment.
    return replace(dep, model=model.replace("*", last))


class ModelTable:
    def __init__(self, deployments: Iterable[Deployment]) -> None:
        by_name: dict[str, list[Deployment]] = {}
        for dep in deployments:
            by_name.setdefault(dep.model_name, []).append(dep)
        self._exact = {
            name: Group(name, _group_members(deps))
            for name, deps in by_name.items()
            if "*" not in name
        }
        patterns = [
            _Pattern(
                name,
                re.compile("(.+)".join(re.escape(part) for part in name.split("*"))),
                _group_members(deps),
            )
            for name, deps in by_name.items()
            if "*" in name
        ]
        # ``sorted`` is stable, so equal specificity keeps config order.
        self._patterns = sorted(patterns, key=lambda p: _specificity(p.name), reverse=True)

    @property
    def names(self) -> list[str]:
        """Concrete model names, in config order; patterns are not models."""
        return list(self._exact)

    def resolve(self, model: str) -> Group | None:
        exact = self._exact.get(model)
        if exact is not None:
            return exact
        for pattern in self._patterns:
            match = pattern.regex.fullmatch(model)
            if match:
                deps = tuple(_concrete(d, match.groups()) for d in pattern.deployments)
                return Group(pattern.name, deps)
        return None
