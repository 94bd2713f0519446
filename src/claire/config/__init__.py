"""The configuration of a run: one typed tree (:class:`RunConfig`), filled from the command
line's options and the environment, serialised as the distributed run spec.

- :mod:`claire.config.tree`: the tree (strategy, data, risk, execution, portfolio, runtime) and
  its serialisation (:func:`to_spec` / :func:`from_spec`);
- :mod:`claire.config.env`: the environment (and `.env`): risk limits, database and bus URLs;
- :mod:`claire.config.options`: the command line's run options and their defaults;
- :mod:`claire.config.flags`: :func:`make_config`, options + environment -> tree.

Between the engine and the core packages in the layer contract: it may use the strategy, risk
and execution settings types, never the engine, a runtime or the command line. Names are loaded
on first use, so that ``claire --help`` does not import the core to read the options' defaults.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "claire.config.env": ("DEFAULT_BUS_URL", "DEFAULT_DATABASE_URL", "ConfigError", "bus_url", "database_url",
                          "environment", "load_dotenv", "redact_url", "risk_config_from_env"),
    "claire.config.flags": ("make_config",),
    "claire.config.options": ("RunOptions",),
    "claire.config.tree": ("DEFAULT_PORTS", "TOPOLOGIES", "DataSettings", "PortfolioSettings", "RunConfig",
                           "RuntimeSettings", "StrategySettings", "from_spec", "to_spec"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = [
    "DEFAULT_BUS_URL", "DEFAULT_DATABASE_URL", "DEFAULT_PORTS", "TOPOLOGIES", "ConfigError", "DataSettings",
    "PortfolioSettings", "RunConfig", "RunOptions", "RuntimeSettings", "StrategySettings", "bus_url",
    "database_url", "environment", "from_spec", "load_dotenv", "make_config", "redact_url",
    "risk_config_from_env", "to_spec",
]

if TYPE_CHECKING:
    from claire.config.env import (
        DEFAULT_BUS_URL,
        DEFAULT_DATABASE_URL,
        ConfigError,
        bus_url,
        database_url,
        environment,
        load_dotenv,
        redact_url,
        risk_config_from_env,
    )
    from claire.config.flags import make_config
    from claire.config.options import RunOptions
    from claire.config.tree import (
        DEFAULT_PORTS,
        TOPOLOGIES,
        DataSettings,
        PortfolioSettings,
        RunConfig,
        RuntimeSettings,
        StrategySettings,
        from_spec,
        to_spec,
    )


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'claire.config' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
