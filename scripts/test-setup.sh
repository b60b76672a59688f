#!/usr/bin/env bash
# What the tests need beyond the locked Python environment: Chromium, for the report test
# (tests/test_report.py). Installed with apt-get when missing and this is root; a run that cannot
# install it says so, and fails in CI (CI set), where that test must not skip. Idempotent.
set -euo pipefail
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
    exit 0
fi
reason="needs root and apt-get"
if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    echo "test-setup: installing chromium with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    if apt-get update -qq && apt-get install -y -qq chromium >/dev/null; then
        exit 0
    fi
    reason="apt-get install chromium failed"
fi
echo "test-setup: chromium is missing and was not installed ($reason); without it the" \
    "report's browser test skips, and in CI fails" >&2
[[ -z "${CI:-}" ]]
