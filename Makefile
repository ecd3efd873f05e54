# Tillbridge — `make test` and `make demo` work on a fresh Debian machine with only python3.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup native tools test lint types imports pytest demo bench chaos soak fuzz clean

CTMOCK := tests/support/ctmock
CTMOCK_STAMP := $(CTMOCK)/node_modules/.installed

setup: $(STAMP) native tools $(CTMOCK_STAMP)

# The npm peer of the commercetools integration tests (the third-party mock server).
$(CTMOCK_STAMP): $(CTMOCK)/package.json $(CTMOCK)/package-lock.json
	@if ! command -v npm >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
		else echo "npm is missing; run: sudo apt-get install -y nodejs npm"; exit 1; fi; \
	fi
	cd $(CTMOCK) && npm ci --no-audit --no-fund --loglevel=error
	touch $(CTMOCK_STAMP)

# The install compiles the POSLog reader, the card-number check and the money arithmetic
# (setup.py, mypyc); here a failed compile is an error, where an end user's install falls
# back to plain Python.
NATIVE := TILLBRIDGE_REQUIRE_NATIVE=1 PYTHONWARNINGS="ignore:Editable installation"
NATIVE_SOURCES := $(shell sed -n 's/^ *"\([a-z_/]*\.py\)",$$/\1/p' setup.py)

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(NATIVE) $(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Compiled modules take precedence over their sources: compile again once a source changed.
native: $(STAMP)
	@for source in $(NATIVE_SOURCES); do \
		built=$$(ls $${source%.py}.*.so 2>/dev/null | head -n 1); \
		if [ -z "$$built" ] || [ "$$source" -nt "$$built" ]; then stale=$$source; fi; \
	done; \
	if [ -n "$$stale" ]; then \
		echo "Compiling the hot path again ($$stale changed)."; \
		$(NATIVE) $(BIN)/python -m pip install --quiet --no-deps -e .; \
	fi

# The real parts the tests start themselves: the Mosquitto broker and its C clients, and
# Debian's Chromium for the dashboard's browser tests.
tools:
	@if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "Installing mosquitto with apt-get."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients >/dev/null; \
	else \
		echo "mosquitto is missing; run: sudo apt-get install -y mosquitto mosquitto-clients"; exit 1; \
	fi
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "Installing chromium (the dashboard's browser tests) with apt-get."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "chromium is missing; run: sudo apt-get install -y chromium"; exit 1; \
	fi
	@if command -v mosquitto_pub >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto-clients >/dev/null; \
	else \
		echo "mosquitto_pub is missing; run: sudo apt-get install -y mosquitto-clients"; exit 1; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

pytest: setup
	$(BIN)/pytest

test: setup lint types imports pytest

# Broker, relay (dry-run target) and three simulated stores until Ctrl-C. Needs only
# python3: without Mosquitto on the machine it runs an embedded MQTT 3.1.1 broker.
demo: $(STAMP)
	@if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then \
		$(BIN)/python -m pip install --quiet '.[demo]'; fi
	$(BIN)/python -m lab.demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
	find agent contract -name '*.so' -delete
	rm -f tillbridge_native__mypyc.*.so

bench: setup
	$(BIN)/python -m tests.bench.run bench-results

# The long mutation fuzz of the relay's intake and of each parser (FUZZ_RUNS in all, shared
# among the six targets) under a 512 MB memory cap; a short seeded run is part of
# `make test` (tests/hostile/test_fuzz.py). FUZZ_RUNS and FUZZ_SEED vary it.
FUZZ_RUNS ?= 1000000
FUZZ_SEED ?= 1
fuzz: setup
	$(BIN)/python -m tests.hostile.fuzz --runs $(FUZZ_RUNS) --seed $(FUZZ_SEED) --memory-mb 512

# The long fault-injection run (a short one runs inside `make test`).
chaos: setup
	$(BIN)/python -m lab.chaos --stores 5 --transactions 20000 --faults 30

# The soak: 1,000,000 transactions across 10 stores with at least 100 faults, the relay on a
# PostgreSQL server of its own that a fault crashes, disks that fill up and clocks that jump
# (libfaketime, Debian's `faketime`).
soak: setup
	@if ! ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime >/dev/null; fi
	$(BIN)/python -m lab.chaos --profile soak
