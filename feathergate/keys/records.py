"""Keys, teams and spend rows as the store keeps them; pure data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["KeyRecord", "SpendRow", "TeamRecord"]


@dataclass(frozen=True, slots=True)
class TeamRecord:
    team_id: str
    team_alias: str | None = None
    models: tuple[str, ...] = ()
    max_budget: float | None = None
    soft_budget: float | None = None
    budget_duration: str | None = None
    budget_reset_at: float | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_parallel_requests: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    blocked: bool = False
    spend: float = 0.0
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True)
class KeyRecord:
    token: str  # sha256 hex of the raw key; the raw key is never stored
    key_name: str  # sk-...<last4>
    key_alias: str | None = None
    expires: float | None = None
    models: tuple[str, ...] = ()
    max_budget: float | None = None
    soft_budget: float | None = None
    budget_duration: str | None = None
    budget_reset_at: float | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_parallel_requests: int | None = None
    team_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    blocked: bool = False
    user_role: str | None = None  # "proxy_admin": may call the management API
    spend: float = 0.0
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def admin(self) -> bool:
        return self.user_role == "proxy_admin"


@dataclass(frozen=True, slots=True)
class SpendRow:
    request_id: str
    api_key: str  # the hash
    team_id: str | None
    model: str
    spend: float
    prompt_tokens: int
    completion_tokens: int
    start_time: float
    end_time: float
    status: str  # "success", "failure" or "cancelled"
    call_type: str = "completion"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens
