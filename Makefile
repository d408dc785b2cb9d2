# attest: the two Quick start commands are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test mutants lint system-deps js-deps peers venv bench clean image lock

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { scripts/system-deps.sh python3-venv && rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[admission,test]'
	@touch $(STAMP)

## make lock: pin every runtime dependency (base and extras other than test) with hashes
## in requirements.lock, used by the Dockerfile, action.yml and the GitLab template.
lock: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip compile pyproject.toml $$($(BIN)/python -c 'import tomllib; print(" ".join("--extra " + e for e in tomllib.load(open("pyproject.toml", "rb"))["project"].get("optional-dependencies", {}) if e != "test"))') \
	  --generate-hashes --universal --python-version 3.11 --custom-compile-command "make lock" -o requirements.lock

## make demo: set up .venv and run the main job end to end on the embedded default.
demo: $(STAMP)
	scripts/system-deps.sh --demo
	$(BIN)/python scripts/demo.py

## make test: install what the tests need (apt, npm, the Go-built peers), lint, then run the whole suite.
test: $(STAMP) system-deps js-deps peers lint
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

## make image: build the webhook image as IMAGE (the chart's image.repository and appVersion,
## which is pyproject's version) with buildah, no Docker engine (BASE_IMAGE=… to choose the base).
IMAGE_REPOSITORY := $(shell sed -n 's/^  repository: *//p' charts/attest/values.yaml | head -n 1)
IMAGE_VERSION := $(shell sed -n 's/^appVersion: *"\(.*\)"/\1/p' charts/attest/Chart.yaml)
IMAGE := $(IMAGE_REPOSITORY):$(IMAGE_VERSION)
image:
	buildah bud --isolation chroot --storage-driver vfs --build-arg VERSION=$(IMAGE_VERSION) \
		$(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) -t $(IMAGE) .

## make lint: ruff, and mypy --strict over both packages (the [tool.mypy] section).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy --strict attest admission

clean:
	rm -rf $(VENV) .demo .pytest_cache .ruff_cache
