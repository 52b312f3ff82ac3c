"""``model_list``: one :class:`Deployment` per entry.

The provider comes from the ``model`` prefix, or is inferred from a bare name
(:mod:`feathergate.catalog`). A provider FeatherGate does not speak (one
LiteLLM knows, or a prefix nobody knows) loads with a warning, and that model
answers 501 naming it; ``feathergate check --strict`` makes it fatal. A
variable that is not set is a warning, and the deployment that needs it
answers every request with an error naming it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from feathergate.catalog import CATALOG, KNOWN_ELSEWHERE, ProviderInfo, split_model
from feathergate.config.deadlines import read_deadlines
from feathergate.config.headers import read_headers
from feathergate.config.model import Deadlines, Deployment, Secret
from feathergate.config.readers import MAX_COUNT, Reader
from feathergate.config.secrets import check_secret, read_secret
from feathergate.config.urls import check_api_base, check_api_version
from feathergate.errors import ConfigError

__all__ = ["Inherited", "read_deployments"]

_ENTRY_KEYS = {"model_name", "litellm_params", "model_info"}
_PARAM_KEYS = {
    "model",
    "api_key",
    "api_base",
    "api_version",
    "timeout",
    "stream_timeout",
    "connect_timeout",
    "first_token_timeout",
    "max_retries",
    "rpm",
    "tpm",
    "weight",
    "order",
    "extra_headers",
    "mock_response",
    "drop_params",
}


@dataclass(frozen=True, slots=True)
class Inherited:
    """What every entry inherits from the rest of the config."""

    drop_params: bool
    deadlines: Deadlines
    provider_deadlines: Mapping[str, Deadlines]


@dataclass(frozen=True, slots=True)
class _Target:
    provider: str
    model: str
    info: ProviderInfo | None
    unavailable: str | None


@dataclass(frozen=True, slots=True)
class _Wire:
    api_base: str | None
    api_version: str | None
    api_key: Secret
    headers: tuple[tuple[str, str], ...]
    missing: tuple[str, ...]  # variables not set, in the order they were needed


def read_deployments(reader: Reader, raw: Any, inherited: Inherited) -> tuple[Deployment, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError("model_list", "expected a list of model entries")
    deployments = _numbered(
        [_deployment(reader, entry, f"model_list[{i}]", inherited) for i, entry in enumerate(raw)]
    )
    seen: set[str] = set()
    for dep in deployments:
        if dep.id in seen:
            message = f"model_info.id {dep.id!r} is used by more than one entry"
            raise ConfigError("model_list", message)
        seen.add(dep.id)
    return deployments


def _deployment(reader: Reader, raw: Any, path: str, inherited: Inherited) -> Deployment:
    entry = reader.mapping(raw, path)
    reader.unknown(path, entry, _ENTRY_KEYS)
    name = entry.get("model_name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{path}.model_name", "required: the name clients ask for")
    ppath = f"{path}.litellm_params"
    params = reader.mapping(entry.get("litellm_params"), ppath)
    reader.unknown(ppath, params, _PARAM_KEYS)
    model = params.get("model")
    if "litellm_params" not in entry:
        # LiteLLM's own langfuse example lists a bare ``model_name: gpt-3.5-turbo``.
        model = name
        reader.warn(ppath, f"missing: the model is {name!r}, as model_name says")
    target = _target(reader, model, ppath, name)
    mock = params.get("mock_response")
    if mock is not None and not isinstance(mock, str):
        raise ConfigError(f"{ppath}.mock_response", "expected a string")
    wire = _wire(reader, params, ppath, target, mock)
    for var in dict.fromkeys(wire.missing):
        reader.warn(ppath, f"environment variable {var} is not set; requests to {name!r} will fail")
    model_info = dict(reader.mapping(entry.get("model_info"), f"{path}.model_info"))
    deadlines = inherited.provider_deadlines.get(target.provider, inherited.deadlines)
    drop = params.get("drop_params")
    if drop is not None:
        drop = reader.flag(drop, f"{ppath}.drop_params")
    return Deployment(
        model_name=name,
        provider=target.provider,
        adapter=target.info.adapter if target.info else "none",
        model=target.model,
        api_base=wire.api_base.rstrip("/") if wire.api_base else None,
        api_key=wire.api_key,
        id=_identity(model_info, path),
        api_version=wire.api_version,
        deadlines=read_deadlines(reader, params, ppath, deadlines),
        max_retries=reader.count(params.get("max_retries"), f"{ppath}.max_retries"),
        rpm=reader.count(params.get("rpm"), f"{ppath}.rpm"),
        tpm=reader.count(params.get("tpm"), f"{ppath}.tpm"),
        weight=reader.finite(params.get("weight"), f"{ppath}.weight", maximum=MAX_COUNT),
        order=reader.count(params.get("order"), f"{ppath}.order"),
        extra_headers=wire.headers,
        mock_response=mock,
        drop_params=inherited.drop_params if drop is None else drop,
        model_info=model_info,
        unavailable=target.unavailable,
        missing_var=wire.missing[0] if wire.missing else None,
    )


def _wire(
    reader: Reader, params: Mapping[Any, Any], ppath: str, target: _Target, mock: str | None
) -> _Wire:
    """Everything that goes into the upstream URL and headers, checked for the wire."""
    missing: list[str] = []
    api_base = _url_part(reader, params, ppath, "api_base", check_api_base, missing)
    api_version = _url_part(reader, params, ppath, "api_version", check_api_version, missing)
    api_key = _api_key(reader, params, ppath, target.info, mock is None and api_base is None)
    if api_key.missing_var:
        missing.append(api_key.missing_var)
    needs_base = target.info is not None and target.info.default_api_base is None
    if needs_base and mock is None and api_base is None and not missing:
        raise ConfigError(f"{ppath}.api_base", f"required for provider {target.provider!r}")
    headers = read_headers(reader, params.get("extra_headers"), f"{ppath}.extra_headers", missing)
    return _Wire(api_base, api_version, api_key, headers, tuple(missing))


def _target(reader: Reader, model: Any, ppath: str, name: str) -> _Target:
    if not isinstance(model, str) or not model:
        raise ConfigError(f"{ppath}.model", "required: '<provider>/<model>'")
    provider, upstream_model = split_model(model)
    info = CATALOG.get(provider) if provider is not None else None
    if info is not None:
        return _Target(provider or "", upstream_model, info, None)
    # One warning, and this model alone answers an error naming the reason: a
    # config written for LiteLLM keeps serving its other models.
    if provider is None:
        unavailable = (
            f"no provider for {model!r}: write '<provider>/{model}' "
            "(LiteLLM infers one only for well-known names such as gpt-*, claude-*)"
        )
    elif provider in KNOWN_ELSEWHERE:
        unavailable = f"provider {provider!r} is not supported by FeatherGate yet"
    else:
        unavailable = f"unknown provider {provider!r}"
    reader.warn(f"{ppath}.model", f"{unavailable}; requests to {name!r} will fail")
    return _Target(provider or "unknown", upstream_model, None, unavailable)


def _url_part(
    reader: Reader,
    params: Mapping[Any, Any],
    ppath: str,
    key: str,
    check: Callable[[str, str], str],
    missing: list[str],
) -> str | None:
    path = f"{ppath}.{key}"
    value, var = reader.text(params.get(key), path)
    if var:
        missing.append(var)
    return None if value is None else check(reader.stripped(value, path), path)


def _api_key(
    reader: Reader,
    params: Mapping[Any, Any],
    ppath: str,
    info: ProviderInfo | None,
    required: bool,
) -> Secret:
    path = f"{ppath}.api_key"
    if "api_key" in params:
        value, var = read_secret(reader, params["api_key"], path)
        return Secret(value, var)
    if info is None or not info.key_env:
        return Secret(None)
    # LiteLLM falls back to the provider's usual variable; so do we, with the same checks.
    env_value = reader.env.get(info.key_env)
    if env_value is not None:
        return Secret(check_secret(reader, env_value, f"{path} (${info.key_env})"))
    if info.key_required and required:
        return Secret(None, info.key_env)
    return Secret(None)


def _identity(model_info: Mapping[Any, Any], path: str) -> str:
    """``model_info.id`` as written, else empty: :func:`_numbered` derives one."""
    dep_id = model_info.get("id")
    if dep_id is None:
        return ""
    if isinstance(dep_id, bool) or not isinstance(dep_id, str | int):
        raise ConfigError(f"{path}.model_info.id", "expected a string")
    return str(dep_id)


def _numbered(deployments: list[Deployment]) -> tuple[Deployment, ...]:
    """Give each entry without ``model_info.id`` a stable one.

    The hash covers what the entry calls (alias, upstream model, base URL) and
    how many identical entries came before it, not its place in the list, so
    an entry added or removed elsewhere leaves the others' ids, and with them
    their router state across a reload, as they were.
    """
    seen: dict[tuple[str, str, str | None], int] = {}
    numbered = []
    for dep in deployments:
        if not dep.id:
            what = (dep.model_name, f"{dep.provider}/{dep.model}", dep.api_base)
            nth = seen[what] = seen.get(what, -1) + 1
            text = "\0".join([*map(str, what), str(nth)])
            dep = replace(dep, id=hashlib.sha256(text.encode()).hexdigest()[:16])
        numbered.append(dep)
    return tuple(numbered)
