"""LiteLLM's proxy YAML, parsed once into frozen objects.

Validation messages name the key path (``model_list[2].litellm_params.model:
unknown provider 'foo'``). Keys LiteLLM knows and FeatherGate does not use
yet load with one warning each, so a team's existing config keeps working.
Everything is checked at load, so a config that ``feathergate check`` accepts
is one ``serve`` can run.

Secrets are written ``os.environ/VAR`` (LiteLLM) or ``${VAR}`` (anywhere in
a string). A variable that is not set is a warning, and the deployment that
needs it answers every request with an error naming the variable.

The package, by concept:

* :mod:`.model`: the frozen dataclasses;
* :mod:`.parse`: the walk over the document's sections;
* :mod:`.readers`: typed readers (numbers, flags, strings, ``${VAR}``);
* :mod:`.secrets`, :mod:`.headers`, :mod:`.urls`: what may go on the wire;
* :mod:`.deployments`, :mod:`.deadlines`, :mod:`.routing`, :mod:`.server`, :mod:`.keys`:
  one section (or layer) each.
"""

from feathergate.config.model import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TOTAL_TIMEOUT,
    Config,
    Deadlines,
    Deployment,
    FallbackRule,
    KeySettings,
    ObservabilitySettings,
    RouterSettings,
    Secret,
    ServerSettings,
    StrategyArgs,
)
from feathergate.config.parse import load_config, parse_config

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_TOTAL_TIMEOUT",
    "Config",
    "Deadlines",
    "Deployment",
    "FallbackRule",
    "KeySettings",
    "ObservabilitySettings",
    "RouterSettings",
    "Secret",
    "ServerSettings",
    "StrategyArgs",
    "load_config",
    "parse_config",
]
