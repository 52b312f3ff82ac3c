"""Typed readers: one YAML value in, a checked Python value out, or a ConfigError naming its path.

A :class:`Reader` holds what a whole document shares: the environment that
``os.environ/VAR`` and ``${VAR}`` resolve against, and the warnings so far.
Numbers are read the way LiteLLM's users write them (``30``, ``2.5``,
``'1e3'``, ``os.environ/RPM``) and must be finite and within a bound, so no
value that loads can overflow an ``int()``, a C ``int`` or a deadline later.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from feathergate.errors import ConfigError

__all__ = ["MAX_COUNT", "MAX_SECONDS", "Reader"]

# Beyond any real rpm, tpm or retry count, and still exact as a float.
MAX_COUNT = 10**15
# About 31 years: a "practically forever" timeout still loads, and every
# deadline computed from it stays a finite float.
MAX_SECONDS = 10**9

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ENV_PREFIX = "os.environ/"


def _as_number(value: Any, path: str) -> int | float:
    """``value`` as an int (exact, however long) or a float; strings are parsed."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
        try:
            return float(value)
        except ValueError:
            raise ConfigError(path, f"expected a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(path, f"expected a number, got {type(value).__name__}")
    return value


class Reader:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.env = dict(environ)
        self.warnings: list[str] = []

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(f"{path}: {message}" if path else message)

    def unknown(self, where: str, data: Mapping[Any, Any], known: set[str]) -> None:
        for key in data:
            if key not in known:
                path = f"{where}.{key}" if where else str(key)
                self.warn(path, "not used by FeatherGate; ignored")

    def mapping(self, value: Any, path: str) -> Mapping[Any, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigError(path, f"expected a mapping, got {type(value).__name__}")
        return value

    def flag(self, value: Any, path: str) -> bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise ConfigError(path, f"expected true or false, got {value!r}")
        return value

    def expand(self, value: Any) -> tuple[Any, str | None]:
        """Resolve ``os.environ/VAR`` and ``${VAR}``; returns (value, missing variable)."""
        if not isinstance(value, str):
            return value, None
        if value.startswith(_ENV_PREFIX):
            var = value[len(_ENV_PREFIX) :]
            return (self.env[var], None) if var in self.env else (None, var)
        missing: list[str] = []

        def sub(match: re.Match[str]) -> str:
            var = match.group(1)
            if var not in self.env:
                missing.append(var)
                return ""
            return self.env[var]

        expanded = _ENV_REF.sub(sub, value)
        return (None, missing[0]) if missing else (expanded, None)

    def text(self, value: Any, path: str) -> tuple[str | None, str | None]:
        """A string (numbers are written as strings); returns (value, missing variable)."""
        value, missing = self.expand(value)
        if value is None:
            return None, missing
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(path, f"expected a string, got {type(value).__name__}")
        return str(value), None

    def stripped(self, value: str, path: str) -> str:
        """``value`` without surrounding whitespace, warned about once and never shown.

        A secret mounted from a file (a Kubernetes secret, ``echo key > file``)
        ends in a newline; sent as is, it would end the header early.
        """
        clean = value.strip()
        if clean != value:
            self.warn(path, "surrounding whitespace removed (the value is not shown)")
        return clean

    def finite(self, value: Any, path: str, *, maximum: float = MAX_SECONDS) -> float | None:
        """A finite number from 0 to ``maximum``; ``None`` when absent."""
        number = self._number(value, path, maximum)
        return None if number is None else float(number)

    def count(self, value: Any, path: str, *, maximum: int = MAX_COUNT) -> int | None:
        """A whole number from 0 to ``maximum``; ``None`` when absent."""
        number = self._number(value, path, maximum)
        if number is None:
            return None
        if isinstance(number, float):
            if not number.is_integer():
                raise ConfigError(path, f"expected a whole number, got {number}")
            number = int(number)
        return number

    def _number(self, value: Any, path: str, maximum: float) -> int | float | None:
        expanded, missing = self.expand(value)
        if missing:
            raise ConfigError(path, f"environment variable {missing} is not set")
        if expanded is None:
            return None
        number = _as_number(expanded, path)
        if isinstance(number, float) and not math.isfinite(number):
            raise ConfigError(path, f"expected a finite number, got {expanded!r}")
        if number < 0:
            shown = f", got {number}" if number > -MAX_COUNT else ""
            raise ConfigError(path, f"must not be negative{shown}")
        if number > maximum:
            raise ConfigError(path, f"must be at most {maximum:,}")
        return number
