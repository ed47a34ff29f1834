# The README's two commands: `make demo` (set up .venv, run a 3-member ring with the demo service)
# and `make test` (the full check CI runs: set-up, lint, format, types, every test tier).
# `make test-quick` is the everyday subset: no root, no system packages, a few minutes.
# Every set-up step prints what it installs or writes and how long it took.
.PHONY: demo test test-quick check setup test-deps bench bench-sim clean

setup:
	@scripts/setup

demo: setup
	.venv/bin/pysup ring --members 3 plans/habsup

test-deps:
	@scripts/setup-test-deps

test:
	@echo "make test: the full check, about 15 minutes on 2 cores (the first run as root adds about"
	@echo "  3 minutes of set-up: Debian packages and a podman base image; docs/test-environment.md)."
	@echo "  For everyday work: make test-quick (no root, under 5 minutes)."
	@$(MAKE) --no-print-directory setup test-deps
	@scripts/check

test-quick: setup
	@echo "make test-quick: lint, format, types; unit, simulator and integration tests (no root)"
	@scripts/check tests/unit tests/sim tests/integration

check:
	@scripts/check

bench: setup
	scripts/setup-bench
	.venv/bin/python -m bench

bench-sim: setup
	.venv/bin/python -m bench.sim --members 100 --scenario rumor --seed 1

clean:
	rm -rf .venv state .mypy_cache .ruff_cache .pytest_cache wheelhouse
