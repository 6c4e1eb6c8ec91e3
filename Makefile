# `make test` and `make demo` set up everything themselves on a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup kafka-jars tools lint typecheck unit pytest test demo clean

setup: $(STAMP) kafka-jars tools

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

# The pinned Kafka jars from Maven Central, resolved once into ~/.cache/prik.
kafka-jars: $(STAMP)
	$(BIN)/python -c "from deploy import LocalKafka, LocalKafkaConfig, default_data_dir; print('kafka jars in', LocalKafka(LocalKafkaConfig(data_dir=default_data_dir())).ensure_jars())"

# kcat is the independent Kafka client the interoperability tests use; chromium (headless)
# is the real browser the dashboard test drives over the DevTools protocol; docker-compose
# (Debian's) checks deploy/compose/ without a Docker engine (`docker-compose config`).
tools:
	@command -v kcat >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat >/dev/null; }
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@command -v docker-compose >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: setup
	$(BIN)/pytest

test: setup lint typecheck pytest

demo: setup
	$(BIN)/prik demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
