"""The operator docs name metrics that exist."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from feathergate import metrics

ROOT = Path(__file__).parent.parent


def test_the_alerting_rules_use_real_metric_names() -> None:
    rules = yaml.safe_load((ROOT / "docs" / "alerts.yaml").read_text())["groups"][0]["rules"]
    used = {
        re.sub(r"_(total|bucket|sum|count)$", "", name)
        for rule in rules
        for name in re.findall(r"feathergate_\w+", rule["expr"])
    }
    known = {
        collector._name  # type: ignore[attr-defined]
        for collector in vars(metrics).values()
        if hasattr(collector, "_name")
    }
    assert used
    assert used <= known, used - known
