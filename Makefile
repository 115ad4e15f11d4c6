# One entry point for people and CI. `make help` lists the targets.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo

.PHONY: help demo test test-deps control-plane cluster lint fmt generate verify bench

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

demo: ## local demo: the sidecar (in-memory store) in front of a demo app; no cluster, no Redis
	demo/run.sh

test: test-deps control-plane ## every test: unit, vectors, real redis-server, real control plane
	@# Tests that run the real operator binary build it themselves (tests/src/operator.rs);
	@# built here first, that is a no-op and nothing compiles while the tests run.
	$(CARGO) build -p hookguard-operator --locked
	@# --no-fail-fast: every test binary runs and reports, so one failure cannot hide another.
	$(CARGO) test --workspace --locked --no-fail-fast

test-deps: ## install what the tests run from the OS packages when missing: redis-server, curl, kill (procps)
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	[ -x /usr/bin/kill ] || missing="$$missing procps"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (apt-get)"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $$missing; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq $$missing; fi; \
	fi

control-plane: ## build kube-apiserver, etcd, kube-controller-manager (+ helm, kubectl) into the cache, once
	tests/control-plane/build.sh

cluster: control-plane ## run the test control plane in the foreground for kubectl and helm
	$(CARGO) run -p hookguard-tests --bin dev-cluster

lint: ## rustfmt and clippy, as CI runs them
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

generate: ## regenerate the CRD YAML in crds/ and in the chart from the Rust types
	$(CARGO) run --quiet -p hookguard-operator -- crd > crds/hookguard.dev_webhookendpoints.yaml
	charts/hookguard/hack/sync-crds.sh

verify: generate ## fail when generated files differ from what is committed
	git diff --exit-code -- crds/ charts/hookguard/templates/crds/

fmt: ## format everything
	$(CARGO) fmt --all

bench: ## criterion: signature verification per scheme at 1 KiB and 64 KiB
	$(CARGO) bench -p hookguard-sidecar --bench verify
