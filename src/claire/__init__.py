"""Claire de Binare: event-driven crypto paper trading.

Components (one folder each): events, marketdata, strategy, risk, execution, portfolio
(the deterministic core), engine (runtimes that wire the core), reporting (run files and
statistics), storage (database), bus (message bus), services (distributed processes), cli.
"""

__version__ = "0.1.0"
