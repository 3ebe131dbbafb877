# The two commands of the README: `make demo` (later: the local control plane,
# the operator and a canary rollout) and `make test` (everything CI runs).
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: test unit lint-rust crds help

help:
	@echo "make test   - formatting, clippy, unit tests (what .ci/run runs)"
	@echo "make crds   - regenerate crds/yaml from the Rust types"

## test: the README's test command; .ci/run calls exactly this.
test: lint-rust unit

lint-rust:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit:
	$(CARGO) test --workspace --locked

crds:
	$(CARGO) run -p mlctl-crds --bin crdgen
