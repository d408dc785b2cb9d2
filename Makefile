# attest: the two Quick start commands are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test mutants lint system-deps js-deps peers venv bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { scripts/system-deps.sh python3-venv && rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[admission,test]'
	@touch $(STAMP)

## make demo: set up .venv and run the main job end to end on the embedded default.
demo: $(STAMP)
	scripts/system-deps.sh --demo
	$(BIN)/python scripts/demo.py

## make test: install what the tests need (apt, npm, the Go-built peers), lint, then run the whole suite.
test: $(STAMP) system-deps js-deps peers
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## make mutants: break each registered security check (tests/security/checks/*.yaml) in a
## temporary copy and fail if its listed tests still pass (MUTANTS_ARGS="-j 4 --only ID").
mutants: $(STAMP) system-deps js-deps peers
	$(BIN)/python scripts/mutants.py $(MUTANTS_ARGS)

system-deps:
	scripts/system-deps.sh

## js-deps: the pinned npm packages of the Node test harness (tests/js), via npm ci.
js-deps: system-deps
	@if [ ! -d tests/js/node_modules ] || [ tests/js/package-lock.json -nt tests/js/node_modules ]; then \
		cd tests/js && npm ci --no-audit --no-fund --loglevel=error && touch node_modules; fi

## peers: cosign, OPA, kube-apiserver, etcd, helm, the TSA and promtool, pinned in
## peers/versions.tsv, built into .peers/bin/ (cached; a failed build fails its tests).
peers: system-deps
	scripts/peers.sh

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .demo .pytest_cache .ruff_cache
