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

.PHONY: run test lint unit lowest system engine image test-image clean fuzz bench

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

test-image: engine
	@bash tests/setup/build-image.sh || [ "$$CI" != true ]

# The scopedns image (Dockerfile; docs/deployment.md). No registry needed: the base is pulled
# or built locally with debootstrap, and the build installs wheels made here, offline.
IMAGE ?= scopedns:latest
image: system engine $(STAMP)
	@IMAGE=$(IMAGE) PYTHON=$(BIN)/python bash image/build.sh || [ "$$CI" != true ]

lint: $(STAMP)
	$(BIN)/ruff check resolver watchers tests bench testkit
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q -m 'not docker'

test: system $(STAMP) test-image image lint
	$(BIN)/pytest -q -rs
	@$(MAKE) --no-print-directory lowest

# The unit tests against the lowest versions pyproject.toml declares (tests/setup/lowest.py),
# in a venv of their own: a lower bound we cannot run on is a lie.
LOWEST := .venv-lowest
$(LOWEST)/.installed: pyproject.toml tests/setup/lowest.py
	@test -x $(LOWEST)/bin/python || $(PYTHON) -m venv $(LOWEST)
	$(PYTHON) tests/setup/lowest.py > $(LOWEST)/constraints.txt
	$(LOWEST)/bin/python -m pip install -q --upgrade pip
	$(LOWEST)/bin/python -m pip install -q -c $(LOWEST)/constraints.txt -e '.[dev]'
	@touch $@

lowest: $(LOWEST)/.installed
	@echo "unit tests on the lowest declared versions: $$(tr '\n' ' ' < $(LOWEST)/constraints.txt)"
	$(LOWEST)/bin/pytest -q -m 'not docker' -p no:cacheprovider

# Coverage-guided fuzzing of the handler (tests/fuzz/); not part of `make test`. New inputs
# go to $(FUZZ_DIR)/corpus, crashes to $(FUZZ_DIR)/crash-*; the seeds stay as they are.
FUZZ_SECONDS ?= 60
FUZZ_DIR ?= $(VENV)/fuzz
fuzz: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,fuzz]'
	@mkdir -p $(FUZZ_DIR)/corpus
	@echo "fuzzing for $(FUZZ_SECONDS) s; log in $(FUZZ_DIR)/fuzz.log"
	@$(BIN)/python -m tests.fuzz.fuzz_handler -max_total_time=$(FUZZ_SECONDS) \
		-print_final_stats=1 -max_len=1024 -artifact_prefix=$(FUZZ_DIR)/ $(FUZZ_DIR)/corpus tests/fuzz/corpus \
		> $(FUZZ_DIR)/fuzz.log 2>&1; status=$$?; \
	grep -E '^#[0-9]+[[:space:]]+(INITED|pulse)' $(FUZZ_DIR)/fuzz.log | tail -n 3; \
	grep -E '^#[0-9]+[[:space:]]' $(FUZZ_DIR)/fuzz.log | tail -n 1; \
	grep -E '^Done |^stat::' $(FUZZ_DIR)/fuzz.log; \
	[ $$status -eq 0 ] || tail -n 60 $(FUZZ_DIR)/fuzz.log; exit $$status

# scopedns against Docker's embedded DNS, dnsmasq, unbound, aardvark-dns and NSD (bench/suite/);
# writes bench/results/<date>.json + .png and the README's Benchmarks section. Long: every peer
# and profile in interleaved rounds (progress as [n/total]), plus the engine figures.
# Peers: scopedns, docker, dnsmasq, unbound, aardvark-dns, nsd, scopedns-nocache, dnsmasq-nocache,
# scopedns-http (metrics on), scopedns-takeover (profile t: Docker's own path), scopedns-baseline.
# Quick: `make bench BENCH_SECONDS=3 BENCH_RUNS=1`; also BENCH_PEERS=scopedns,dnsmasq, BENCH_PROFILES=a,b,t, BENCH_SCALE=none,
# BENCH_ENGINE=no, BENCH_ENGINE_ARGS='--containers 10 --sync 20', BENCH_FIXED_SECONDS=8.
# Needs root for the installs and nsenter.
bench: system $(STAMP)
	@bash bench/install.sh
	@$(BIN)/python -c 'import matplotlib' 2>/dev/null || $(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python -m bench.suite.run

clean:
	rm -rf $(VENV) $(LOWEST) .mypy_cache .ruff_cache .pytest_cache
