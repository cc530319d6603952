# scopedns: `make run` serves the local Docker engine; `make test` installs what is missing
# and runs ruff, mypy and every test (the Docker integration tests on a real engine).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_ARGS ?= --listen 127.0.0.1:5353
# The Debian engine's client; some machines carry another `docker` earlier on PATH.
DOCKER ?= $(shell command -v /usr/bin/docker || command -v docker)
export DOCKER

.PHONY: run test lint unit system engine image clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || bash tests/setup/install-system.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

run: $(STAMP)
	@$(DOCKER) info >/dev/null 2>&1 || echo "scopedns: no Docker engine answers at the default socket; start one or pass RUN_ARGS='--docker tcp://HOST:2375'"
	$(BIN)/scopedns serve $(RUN_ARGS)

system:
	@bash tests/setup/install-system.sh

engine: system
	@bash tests/setup/start-docker.sh || [ "$$CI" != true ]

image: engine
	@bash tests/setup/build-image.sh || [ "$$CI" != true ]

lint: $(STAMP)
	$(BIN)/ruff check resolver watchers tests bench
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q -m 'not docker'

test: system $(STAMP) image lint
	$(BIN)/pytest -q -rs

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
