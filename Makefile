# Keel: set-up commands. `make run` starts a single-member Keel; `make test`
# runs every test of the workspace. Both install what the build needs first.
SHELL := /bin/bash
CARGO ?= cargo
export CARGO_BUILD_JOBS ?= 2
# The Python `kubernetes` client for the client-compatibility test, in its own venv.
PYVENV ?= /var/tmp/keel-venv
export KEEL_PYTHON ?= $(PYVENV)/bin/python3
# libclang-dev: RocksDB bindings; protobuf-compiler: the protos of the etcd
# client, which only the `keel-bench` crate links (the `keel` binary does not;
# `make build` and `make test` build the whole workspace, bench included);
# etcd-server: the baseline of `keel bench`; etcd-client: etcdctl, whose
# `snapshot save`/`restore` `keel bench replay` times beside Keel's; fuse3: fusermount3 for the
# power-cut filesystem of the durability tests.
DEB_PACKAGES := libclang-dev g++ pkg-config protobuf-compiler etcd-server etcd-client curl fuse3

.PHONY: deps build test run lint fmt bench bench-store

# Install the Debian packages the build and tests need; skips what is present.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	else echo "deps: all present ($(DEB_PACKAGES))"; fi
	@if ! $(PYVENV)/bin/python3 -c 'import kubernetes' 2>/dev/null; then \
	  echo "installing the Python kubernetes client into $(PYVENV)"; \
	  python3 -m venv $(PYVENV) && $(PYVENV)/bin/pip install -q kubernetes; \
	else echo "deps: Python kubernetes client present"; fi
	@bash scripts/kubectl-deps.sh

build: deps
	$(CARGO) build --workspace --all-targets

# Every test of the workspace (unit, property, conformance, in-process clusters,
# gRPC, fuzz, power cuts, kubectl, bench). The binaries the process tests start
# (`keel`, `keel-bench`, the test filesystem) are built first: `cargo test` alone does not
# build another package's binaries. --all-targets in both steps keeps one
# feature resolution, so RocksDB is compiled once.
# The first step also builds the `keel` binary (and the test helper
# binaries) that the integration tests start from beside their executables.
test: deps
	$(CARGO) build --workspace --all-targets
	$(CARGO) test --workspace --all-targets -- --show-output

# A single store member with its data under ./keel-data (Ctrl-C stops it).
run: deps
	$(CARGO) run --bin keel -- server --data-dir ./keel-data

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# Benchmarks (release build). `make bench SUITE=watch BENCH_ARGS='--watchers 1000'`
# runs one suite (store, api, watch, scale, failover, restart); each starts its
# own Keel and etcd members on loopback ports and stops them. `keel bench` runs
# the `keel-bench` binary beside `keel`, which starts `keel server` processes:
# both are built.
SUITE ?= store
bench: deps
	$(CARGO) build --release -p keel -p keel-bench
	$(CARGO) run --release --bin keel -- bench $(SUITE) $(BENCH_ARGS)

bench-store: SUITE = store
bench-store: bench
