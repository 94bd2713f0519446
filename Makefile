# Claire de Binare. `make demo` and `make test` work on a fresh clone (they install first).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_OUT ?= runs/demo

.PHONY: install demo test bench lint clean proto system-tools

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The main job in miniature: a papertest of about a minute. `claire mexc-fake` replays a bundled
# day of real 1m data (BTC, ETH, SOL) at 30 bars per second as a local MEXC; the run is timed by
# the exchange's event time (one day), detached under its supervisor, with SQLite and the
# in-memory bus (no servers). On the way the status screen, at the end the report and its verdict
# ($(DEMO_OUT)/report.html). The real thing: `claire papertest start --duration 7d` (README).
demo: $(STAMP)
	@$(VENV)/bin/claire papertest stop --run-dir $(DEMO_OUT) >/dev/null 2>&1 || true  # a demo still running
	rm -rf $(DEMO_OUT)
	$(VENV)/bin/claire papertest start --source mexc-fake --speed 30 --duration 1d \
	  --symbols BTCUSDT,ETHUSDT,SOLUSDT --strategy momentum --run-dir $(DEMO_OUT)
	sleep 25
	$(VENV)/bin/claire papertest status --run-dir $(DEMO_OUT)
	$(VENV)/bin/claire papertest report --wait --timeout 300 --run-dir $(DEMO_OUT)
	$(VENV)/bin/claire papertest status --run-dir $(DEMO_OUT)

# What the tests drive as a user would have it, from Debian's packages: the browser (chromium), promtool
# and a Prometheus server (prometheus), a compose client (docker-compose). Installed only when missing;
# the package's service is not started (the tests start their own on free ports).
SYSTEM_TOOLS := chromium:chromium promtool:prometheus prometheus:prometheus docker-compose:docker-compose
system-tools:
	@missing=""; for pair in $(SYSTEM_TOOLS); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then echo "installing from Debian's packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; fi

test: $(STAMP) system-tools
	$(VENV)/bin/pytest -n 2 --dist loadgroup -q

# Benchmarks print figures (JSON, with the command that gave them); see docs/benchmarks.md.
bench: $(STAMP)
	$(VENV)/bin/claire bench replay --json
	$(VENV)/bin/claire bench bus --json
	$(VENV)/bin/claire bench storage --json
	$(VENV)/bin/claire bench pipeline --events 30000 --json
	$(VENV)/bin/claire bench pipeline --events 20000 --rate 1000 --json
	$(VENV)/bin/claire bench pipeline --events 30000 --topology account --json
	$(VENV)/bin/claire bench pipeline --events 20000 --rate 1000 --topology account --json
	$(VENV)/bin/claire bench mexc --json

# The MEXC protobuf classes (committed) from the project's own .proto; a test checks they match.
proto: $(STAMP)
	$(PY) -m claire.adapters.mexc.protogen  # python -m grpc_tools.protoc, plus a `# ruff: noqa` line

# Quality gates: ruff (style, bugs, complexity, security), the layer contracts, mypy (strict on the core).
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .hypothesis
