#!/usr/bin/env bash
# The whole test suite: lint, what the tests need outside Python, then every package's tests and
# the cross-package tests.
source "$(dirname "$0")/bootstrap.sh"
"${UV[@]}" run ruff check .
"${UV[@]}" run ruff format --check .
bash scripts/test-setup.sh
"${UV[@]}" run pytest -n auto --dist loadscope "$@"
