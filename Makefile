# The two commands a newcomer needs:  make demo  and  make test.
# Both install what a fresh Debian machine with Rust lacks: cmake (zlib-ng under Pingora) and,
# for the tests, nginx, apache2, haproxy and caddy (the shipped front-proxy examples, run as
# shipped; the load bench's smoke run), php-cli (a real PHP host), prometheus (promtool), openssl
# (test certificates), systemd (`systemd-analyze verify` on the example unit) and redis-server
# with redis-cli and redis-sentinel ([shared] on a real Redis, standalone, Cluster, Sentinel and
# TLS); for
# `make bench`, wrk as well.
# RUNLEVEL=1 keeps the nginx package from starting a system nginx on port 80.

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint unit deps test-deps bench-deps bench fuzz differential

deps:
	@command -v cmake >/dev/null 2>&1 || { \
		echo "installing cmake (needed to build Pingora's zlib-ng)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq cmake; }

test-deps: deps
	@{ [ -x /usr/sbin/nginx ] && command -v openssl >/dev/null 2>&1 && command -v systemd-analyze >/dev/null 2>&1 \
		&& command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 && command -v redis-sentinel >/dev/null 2>&1 \
		&& [ -x /usr/sbin/apache2 ] && [ -x /usr/sbin/haproxy ] && command -v caddy >/dev/null 2>&1 \
		&& command -v php >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 && command -v curl >/dev/null 2>&1; } || { \
		echo "installing nginx, apache2, haproxy, caddy, php-cli, prometheus (promtool), openssl, systemd, redis-server, redis-tools and redis-sentinel (front-proxy examples, the PHP host, metrics checks, TLS and [shared] tests, the unit file check)"; \
		$(SUDO) apt-get update -qq && $(SUDO) env RUNLEVEL=1 apt-get install -y -qq nginx apache2 haproxy caddy php-cli prometheus curl openssl systemd redis-server redis-tools redis-sentinel; }

demo: deps
	@echo "demo: building wopi-guard (debug profile; the first build takes a few minutes), then running it"
	cargo run -- demo

test: test-deps lint unit

# Benches and examples run once in test mode first, so the last summary is the test suite's.
# The example runs as a program (it asserts its outcomes); the fuzz crate is type-checked on
# stable, so it still compiles where `make fuzz` has no nightly toolchain to run it; the proxy
# alone (no `demo` feature) is type-checked too.
unit: deps
	cargo test --benches --examples
	cargo run --quiet --example verify_one
	cargo check --quiet --manifest-path fuzz/Cargo.toml --bins --target-dir target/fuzz-check
	cargo check --quiet --no-default-features
	cargo test --lib --bins --tests

# The PHP differential test over its whole generated set (about 5000 requests; `make test` runs
# a short one): what a real PHP host reads of each request wopi-guard forwards as verified is what
# wopi-guard verified. CI runs it after `make test`, on the same build.
differential: test-deps
	WOPI_GUARD_DIFFERENTIAL=full cargo test --test it -- php_host

lint: deps
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

bench-deps: deps
	@{ [ -x /usr/sbin/nginx ] && command -v wrk >/dev/null 2>&1 && command -v openssl >/dev/null 2>&1; } || { \
		echo "installing nginx, wrk and openssl (the load benchmark)"; \
		$(SUDO) apt-get update -qq && $(SUDO) env RUNLEVEL=1 apt-get install -y -qq nginx wrk openssl; }

bench: bench-deps
	cargo bench --bench verify
	cargo bench --bench load

# Every fuzz target for FUZZ_SECONDS, memory capped, from the seed corpus (left unchanged: new
# inputs go to a temporary directory). Needs a nightly toolchain; says so and skips without one.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := discovery_xml cryptoapi_blob proof_headers access_header config operation forwarded_headers upstream_headers

fuzz: deps
	@if ! cargo +nightly --version >/dev/null 2>&1; then \
		echo "fuzz: skipped: no nightly toolchain here (cargo-fuzz needs one; see fuzz/README.md)"; exit 0; fi; \
	command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked; \
	for t in $(FUZZ_TARGETS); do \
		work=$$(mktemp -d); mkdir $$work/corpus; \
		echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
		cargo +nightly fuzz run -O $$t $$work/corpus fuzz/corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=1024 > $$work/log 2>&1; \
		status=$$?; grep -E "^Done" $$work/log || true; \
		if [ $$status -ne 0 ]; then tail -60 $$work/log; rm -rf $$work; \
			echo "fuzz: $$t FAILED (the input is in fuzz/artifacts/$$t/)"; exit 1; fi; \
		rm -rf $$work; \
	done
