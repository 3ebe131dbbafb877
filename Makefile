# The README's commands. `make test` is what CI runs (.ci/run calls exactly it):
# formatting, clippy, unit tests, then the end-to-end suite against a local
# real control plane (built from Go modules on first use, cached in
# ~/.cache/mlctl-e2e, always torn down afterwards).
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: help test tools lint-rust unit build e2e soak crds cluster-up cluster-down bench bench-ranker demo demo-down images

help:
	@echo "make demo          - a real node serving a ranker under load: a canary promoted on its metrics, a bad one rolled back"
	@echo "make demo-down     - stop the demo's traffic, file server and control plane"
	@echo "make test          - everything CI runs: fmt, clippy, unit tests, e2e suite"
	@echo "make unit          - unit tests only (no cluster)"
	@echo "make e2e           - the end-to-end suite (brings a local cluster up and down)"
	@echo "make crds          - regenerate crds/yaml and the chart's CRDs from the Rust types"
	@echo "make cluster-up    - start the local control plane (then: eval \"\$$(e2e/cluster env)\")"
	@echo "make cluster-down  - stop it"
	@echo "make bench         - 1k/5k/10k models: mlctl vs Argo Rollouts vs the control plane's floor (own cluster; BENCH_ARGS=...)"
	@echo "make soak          - 100 steady models, 10 minutes: zero operator writes (audit log; brings a cluster up and down)"
	@echo "make bench-ranker  - mlctl-ranker vs LightGBM, XGBoost, lleaves, treelite, onnxruntime; HTTP p50/p99"
	@echo "make images        - release images with buildah (no Docker) as OCI archives in target/images (docs/images.md)"

## demo: the README's quickstart (scripts/demo: cluster with a real node, chart, traffic, two canaries).
demo:
	scripts/demo up

demo-down:
	scripts/demo down

## test: the README's test command (scripts/test: the steps below, then a summary line).
test:
	scripts/test

## Tools the unit tests need beyond Rust (installed by the project, idempotent).
tools:
	sh gitops/tests/install-lua.sh

lint-rust:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit:
	$(CARGO) test --workspace --exclude mlctl-e2e --locked

build:
	$(CARGO) build --locked -p mlctl-operator -p mlctl -p mlctl-ranker

e2e: build
	e2e/run

soak: build
	MLCTL_E2E_PROMETHEUS=0 e2e/run --test soak -- --ignored

crds:
	$(CARGO) run -p mlctl-crds --bin crdgen

cluster-up:
	e2e/cluster up

cluster-down:
	e2e/cluster down

## bench: floor, mlctl and Argo Rollouts at 1k/5k/10k models on a cluster of its own
## (docs/performance.md); flags through BENCH_ARGS, e.g. BENCH_ARGS="--sizes 1000".
bench:
	scripts/bench-operator $(BENCH_ARGS)

## bench-ranker: scoring speed side by side with the libraries and compilers (docs/ranker.md),
## then the HTTP latency of `:rank` on one core. Not a test; installs its Python peers.
bench-ranker:
	ranker/bench/run
	ranker/bench/http

## images: ghcr.io/mlctl/{mlctl-operator,mlctl-ranker,mlctl}:<version> built without a Docker
## engine; OCI archives for `ctr -n k8s.io images import` (docs/images.md).
images:
	scripts/images
