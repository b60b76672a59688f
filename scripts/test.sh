#!/usr/bin/env bash
# The whole test suite: lint, then every package's tests and the cross-package tests.
source "$(dirname "$0")/bootstrap.sh"
"${UV[@]}" run ruff check .
"${UV[@]}" run ruff format --check .
"${UV[@]}" run pytest "$@"
