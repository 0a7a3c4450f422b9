# The two commands of the README: `make demo` and `make test`. Both start from a fresh machine:
# system packages (apt, when root), the Python venv, npm packages, the local stack.
SHELL := /bin/bash
PY := .venv/bin/python
IOE := .venv/bin/ioe

.PHONY: setup stack demo test lint bench clean

setup:
	bash infra/bootstrap.sh

stack: setup
	$(IOE) stack up

demo: stack
	$(IOE) demo

test: stack
	bash infra/run-tests.sh

lint:
	.venv/bin/ruff check .

bench: stack
	$(PY) -m bench

clean:
	-$(IOE) stack down
	rm -rf .local
