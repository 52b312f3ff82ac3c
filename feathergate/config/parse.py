"""The walk over the whole document: sections in, one :class:`Config` out."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from feathergate.config import keys as key_settings
from feathergate.config import observability
from feathergate.config.deadlines import read_global_deadlines, read_provider_defaults
from feathergate.config.deployments import Inherited, read_deployments
from feathergate.config.keys import read_keys
from feathergate.config.model import Config
from feathergate.config.readers import Reader
from feathergate.config.routing import ROUTER_KEYS, read_router
from feathergate.config.server import FEATHERGATE_KEYS, GENERAL_KEYS, read_server
from feathergate.errors import ConfigError
from feathergate.state import settings as shared_state

__all__ = ["load_config", "parse_config"]

# Keys FeatherGate reads. Anything else in a known section is warned about once.
_TOP_KEYS = {
    "model_list",
    "litellm_settings",
    "router_settings",
    "general_settings",
    "environment_variables",
    "feathergate_settings",
}
_LITELLM_KEYS = {
    "drop_params",
    "request_timeout",
    "num_retries",
    "fallbacks",
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "default_fallbacks",
    *observability.LITELLM_KEYS,
}


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file; raises :class:`ConfigError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read config {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError("", f"{path}: not UTF-8 text") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("", f"{path}: not valid YAML: {exc}") from None
    except (RecursionError, ValueError) as exc:
        # Nesting deeper than the YAML composer's recursion allows, or an
        # integer too long for int() (Python caps them at 4300 digits).
        raise ConfigError("", f"{path}: YAML too deep or a number too long: {exc}") from None
    return parse_config(raw, environ, source=str(path))


def parse_config(
    raw: Any, environ: Mapping[str, str] | None = None, *, source: str = "<memory>"
) -> Config:
    """Validate a parsed YAML document; ``environ`` defaults to the process's."""
    reader = Reader(os.environ if environ is None else environ)
    root = reader.mapping(raw, "")
    reader.unknown("", root, _TOP_KEYS)
    _export_environment(reader, root.get("environment_variables"))
    litellm = _section(
        reader,
        root,
        "litellm_settings",
        _LITELLM_KEYS | shared_state.LITELLM_KEYS | key_settings.LITELLM_KEYS,
    )
    router = _section(reader, root, "router_settings", ROUTER_KEYS | shared_state.ROUTER_KEYS)
    general = _section(
        reader,
        root,
        "general_settings",
        GENERAL_KEYS | shared_state.GENERAL_KEYS | key_settings.GENERAL_KEYS,
    )
    ours = _section(
        reader,
        root,
        "feathergate_settings",
        FEATHERGATE_KEYS | shared_state.FEATHERGATE_KEYS | observability.OURS,
    )
    shared, shared_warnings = shared_state.parse_shared_state(
        router, litellm, general, ours, reader.env
    )
    reader.warnings.extend(shared_warnings)

    drop_params = reader.flag(litellm.get("drop_params", False), "litellm_settings.drop_params")
    deadlines = read_global_deadlines(reader, router, litellm)
    inherited = Inherited(
        drop_params=drop_params,
        deadlines=deadlines,
        provider_deadlines=read_provider_defaults(reader, ours.get("provider_defaults"), deadlines),
    )
    deployments = read_deployments(reader, root.get("model_list"), inherited)
    server = read_server(reader, general, ours)
    return Config(
        deployments=deployments,
        router=read_router(reader, router, litellm),
        server=server,
        observability=observability.read_observability(reader, litellm, ours),
        keys=read_keys(reader, general, litellm, source, has_master_key=bool(server.master_key)),
        drop_params=drop_params,
        shared_state=shared,
        warnings=tuple(reader.warnings),
        source=source,
    )


def _section(
    reader: Reader, root: Mapping[Any, Any], name: str, known: set[str]
) -> Mapping[Any, Any]:
    section = reader.mapping(root.get(name), name)
    reader.unknown(name, section, known)
    return section


def _export_environment(reader: Reader, raw: Any) -> None:
    # LiteLLM exports these before reading the rest; the process's own env wins.
    for key, value in reader.mapping(raw, "environment_variables").items():
        if value is None:  # `REDIS_PASSWORD:` with nothing after it (load_balancer.yaml)
            reader.warn(f"environment_variables.{key}", "no value; not exported")
            continue
        if not isinstance(value, str | int | float):  # bool is an int: 'True', as LiteLLM
            raise ConfigError(f"environment_variables.{key}", "expected a string")
        reader.env.setdefault(str(key), str(value))
