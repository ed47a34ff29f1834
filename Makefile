# The two commands of the README: `make demo` (set up, run a 3-member ring with the demo service)
# and `make test` (set up, run the whole check: lint, format, types, tests).
.PHONY: demo test check setup test-deps bench bench-sim clean

setup:
	scripts/setup

demo: setup
	.venv/bin/pysup ring --members 3 plans/habsup

test-deps:
	scripts/setup-test-deps

test: setup test-deps
	scripts/check

check:
	scripts/check

bench: setup
	scripts/setup-bench
	.venv/bin/python -m bench

bench-sim: setup
	.venv/bin/python -m bench.sim --members 100 --scenario rumor --seed 1

clean:
	rm -rf .venv state .mypy_cache .ruff_cache .pytest_cache wheelhouse
