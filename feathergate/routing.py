"""Which deployment serves a model name.

Entries sharing a ``model_name`` form a group; ``simple-shuffle`` picks one
at random, weighted by ``weight``, else ``rpm``, else ``tpm``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from feathergate.config import Config, Deployment
from feathergate.errors import ModelNotFound

__all__ = ["Router"]


def _weight(dep: Deployment) -> float:
    for value in (dep.weight, dep.rpm, dep.tpm):
        if value:
            return float(value)
    return 1.0


class Router:
    def __init__(self, config: Config, rng: random.Random | None = None) -> None:
        self._groups: dict[str, list[Deployment]] = {}
        for dep in config.deployments:
            self._groups.setdefault(dep.model_name, []).append(dep)
        self._rng = rng or random.Random()

    @property
    def model_names(self) -> list[str]:
        return list(self._groups)

    def group(self, model: str) -> Sequence[Deployment]:
        group = self._groups.get(model)
        if not group:
            raise ModelNotFound(model)
        return group

    def pick(self, model: str) -> Deployment:
        group = self.group(model)
        if len(group) == 1:
            return group[0]
        return self._rng.choices(group, weights=[_weight(d) for d in group])[0]
