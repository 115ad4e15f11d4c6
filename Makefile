# One entry point for people and CI. `make help` lists the targets.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo

.PHONY: help demo test e2e test-deps control-plane cluster lint fmt generate verify bench images cli

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

demo: ## local demo: the sidecar (in-memory store) in front of a demo app; no cluster, no Redis
	demo/run.sh

test: test-deps control-plane ## every test: unit, vectors, real redis-server, real control plane, then `make e2e` (root)
	@# Tests that run the real operator, CLI and sidecar binaries build them themselves
	@# (tests/src/cargo.rs); built here first, that is a no-op and nothing compiles while the
	@# tests run.
	$(CARGO) build -p hookguard-operator -p hookguard-cli -p hookguard-sidecar --locked
	@# --no-fail-fast, and the e2e runs after a failure too: one failure cannot hide another.
	status=0; \
	$(CARGO) test --workspace --locked --no-fail-fast || status=$$?; \
	$(MAKE) --no-print-directory e2e || status=$$?; \
	exit $$status

e2e: node-deps images ## Hookguard on a real one-node cluster: node smoke test, then helm install to uninstall (root)
	$(CARGO) test -p hookguard-tests --features node --locked --no-fail-fast --test node_smoke --test e2e -- --nocapture

PREFIX ?= $(HOME)/.local
cli: ## install the CLI into $(PREFIX)/bin (default ~/.local/bin) as hookguard, kubectl-hookguard and its completion shim
	$(CARGO) install --locked --path cli --root $(PREFIX)
	ln -sf hookguard $(PREFIX)/bin/kubectl-hookguard
	ln -sf hookguard $(PREFIX)/bin/kubectl_complete-hookguard

test-deps: ## install what the tests run when missing: redis-server, curl, kill (procps), faketime; Valkey 8 from bookworm-backports into the cache
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	command -v faketime >/dev/null || missing="$$missing faketime"; \
	[ -x /usr/bin/kill ] || missing="$$missing procps"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (apt-get)"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $$missing; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq $$missing; fi; \
	fi
	@# Valkey (>= 7.2, for WAITAOF) unpacked into the cache, beside the system's redis-server.
	tests/valkey-deps.sh >/dev/null

control-plane: ## build kube-apiserver, etcd, kube-controller-manager, kubelet, kube-proxy, kube-scheduler (+ helm, kubectl) into the cache, once
	tests/control-plane/build.sh

images: test-deps control-plane ## build the one-node cluster's images (pause, CoreDNS, operator, sidecar, Redis, test app) as tars into the cache
	$(CARGO) run --quiet --locked -p hookguard-tests --bin images

cluster: control-plane ## run the test control plane in the foreground for kubectl and helm
	$(CARGO) run -p hookguard-tests --bin dev-cluster

.PHONY: node-deps node-cluster
node-deps: ## install what the one-node cluster runs when missing: containerd, runc, CNI plugins, iptables
	tests/control-plane/node-deps.sh

node-cluster: node-deps control-plane ## run the one-node cluster (kubelet, containerd, CoreDNS) in the foreground; root
	$(CARGO) run -p hookguard-tests --bin dev-cluster -- --node

lint: ## rustfmt and clippy, as CI runs them
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --all-features --locked -- -D warnings

generate: ## regenerate the CRD YAML in crds/ and in the chart from the Rust types
	$(CARGO) run --quiet -p hookguard-operator -- crd > crds/hookguard.dev_webhookendpoints.yaml
	charts/hookguard/hack/sync-crds.sh

verify: generate ## fail when generated files differ from what is committed
	git diff --exit-code -- crds/ charts/hookguard/templates/crds/

fmt: ## format everything
	$(CARGO) fmt --all

bench: ## criterion: signature verification per scheme at 1 KiB and 64 KiB
	$(CARGO) bench -p hookguard-sidecar --bench verify
