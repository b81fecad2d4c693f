# Mockex: the map of how to do things. `make` alone lists the targets.
# Every target installs what it needs first; re-runs skip whatever is already up to date.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PY := .venv/bin/python
BUF := node_modules/.bin/buf
# Extra arguments for pytest, e.g. `make test PYTEST_ARGS="-k ioc -x"`.
PYTEST_ARGS ?=
# Order-flow CSV for `make bench-engine` (format: SPEC.md section 6).
FLOW ?=

.PHONY: help setup setup-python setup-node setup-redis setup-kafka setup-postgres setup-chromium proto lint \
	envoy-validate breaking web web-test test bench-engine require-flow bench run clean

help: ## list the targets
	@echo "Mockex make targets:"
	@awk 'BEGIN { FS = ":.*## " } /^[a-zA-Z_-]+:.*## / { printf "  %-14s %s\n", $$1, $$2 }' \
		$(MAKEFILE_LIST)

setup: setup-python setup-node setup-redis setup-kafka setup-postgres setup-chromium ## install everything: .venv, buf, Redis, Kafka, PostgreSQL, Chromium

setup-chromium: ## Chromium (Debian's packages) for the web terminal's browser test
	@scripts/install-chromium.sh

setup-postgres: ## PostgreSQL server binaries (Debian packages) for store_svc's PostgreSQL tests
	@scripts/install-postgres.sh

setup-python: ## .venv with requirements.txt and mockex (editable)
	@scripts/setup-python.sh

setup-node: node_modules/.package-lock.json ## buf and the web terminal's tools, from the npm registry (package-lock.json)

# npm ci writes node_modules/.package-lock.json, so it runs again only when the lock changes.
node_modules/.package-lock.json: package-lock.json
	@echo "==> installing buf, Vite, TypeScript, protoc-gen-es, Vitest (npm ci)"
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $@

setup-redis: ## redis-server, from Debian's packages (apt-get)
	@scripts/install-redis.sh

setup-kafka: ## Apache Kafka broker jars, from Maven Central, into var/kafka/libs
	@scripts/install-kafka.sh

# The web terminal (web/): TypeScript clients generated from proto/ by buf with protoc-gen-es
# (buf.gen.yaml) into web/src/gen, then Vite's bundle into build/web, which the edge serves at /.
# Both are git-ignored and rebuilt only when an input changed.
WEB_GEN_STAMP := web/src/gen/.stamp
WEB_SOURCES := $(shell find web -path web/src/gen -prune -o -type f -print) vite.config.ts \
	tsconfig.json package-lock.json

$(WEB_GEN_STAMP): $(shell find proto -name '*.proto') buf.gen.yaml node_modules/.package-lock.json | proto
	@echo "==> TypeScript clients from proto/ (buf generate, protoc-gen-es) into web/src/gen"
	@$(BUF) generate
	@touch $@

build/web/index.html: $(WEB_GEN_STAMP) $(WEB_SOURCES)
	@echo "==> web terminal: tsc --noEmit, vite build into build/web"
	@node_modules/.bin/tsc --noEmit -p tsconfig.json
	@node_modules/.bin/vite build --logLevel warn

web: build/web/index.html ## build the web terminal (web/) into build/web: generated clients, type check, Vite bundle

web-test: $(WEB_GEN_STAMP) ## the web terminal's unit tests (Vitest)
	@echo "==> vitest"
	@node_modules/.bin/vitest run

proto: setup-python ## generate Python into build/gen and build/proto/exchange.pb from proto/
	@scripts/build-protos.sh

lint: proto setup-node envoy-validate lint-deploy ## ruff check, buf lint, the Envoy config check, the deploy checks
	@echo "==> ruff check"
	@.venv/bin/ruff check .
	@echo "==> buf lint"
	@$(BUF) lint

# The edge's config is a template (mockex/edge.py renders it); check what `make run` would start.
envoy-validate: proto web ## render envoy/envoy.yaml into build/edge and run envoy --mode validate on it
	@echo "==> envoy --mode validate (build/edge/envoy.yaml)"
	@$(PY) -m mockex.edge --out build/edge >/dev/null
	@.venv/bin/envoy --mode validate --config-path build/edge/envoy.yaml \
		--disable-hot-restart --log-level warn

# Deployment (docs/deployment.md): the image (Dockerfile), deploy/compose.yaml and the Helm chart
# helm/mockex. Envoy's config for them is mockex.edge's, rendered by mockex.render_edge for the
# containers' host names: into build/deploy/edge-compose (mounted by compose) and into
# helm/mockex/files/edge (the chart's ConfigMap; placeholders the chart fills with its Services).
.PHONY: setup-helm deploy-edge compose-secrets compose-config lint-deploy

setup-helm: ## helm, built with go install from the Go module proxy into var/tools/bin
	@scripts/install-helm.sh

deploy-edge: proto web ## render Envoy's config for compose (build/deploy/edge-compose) and the chart (helm/mockex/files/edge)
	@echo "==> Envoy config for compose and the chart (mockex.render_edge)"
	@$(PY) -m mockex.render_edge --out build/deploy/edge-compose \
		--gateway gateway:50051 --stream-ws stream:50055 >/dev/null
	@$(PY) -m mockex.render_edge --out helm/mockex/files/edge \
		--gateway MOCKEX-GATEWAY-PODS:50051 --stream-ws MOCKEX-STREAM-PODS:50055 >/dev/null

compose-secrets: ## random admin key and passwords in deploy/secrets/ for compose (kept if present)
	@scripts/compose-secrets.sh

compose-config: compose-secrets deploy-edge ## everything `docker compose -f deploy/compose.yaml up` needs besides the image

lint-deploy: setup-python setup-helm deploy-edge ## hadolint, compose schema, helm lint/template, kubernetes-validate, envoy validate
	@scripts/lint-deploy.sh

breaking: proto setup-node ## buf breaking: proto/ against the main branch
	@scripts/buf-breaking.sh main

test: setup proto lint web web-test ## set everything up, lint, then run every test (real servers included)
	@echo "==> pytest"
	@.venv/bin/pytest $(PYTEST_ARGS)

require-flow:
	@if [[ -z "$(FLOW)" ]]; then \
		echo "error: FLOW is required: make bench-engine FLOW=path/to/flow.csv" >&2; exit 2; fi

bench-engine: require-flow setup-python proto ## matching engine throughput on an order-flow file (FLOW=...)
	@$(PY) -m bench.engine_bench --flow "$(FLOW)"

bench: setup proto ## every benchmark (bench.run_all)
	@$(PY) -m bench.run_all

run: setup proto web ## start the exchange (mockex.run): Redis, Kafka and the services; gRPC on 50051
	@$(PY) -m mockex.run

clean: ## remove build/ and web/src/gen (generated code); keeps .venv, var/ and node_modules
	rm -rf build web/src/gen
