# Sourced by the other scripts: makes sure uv exists (installing it with pip if not) and the
# workspace environment matches uv.lock. Needs only Python >= 3.11 with pip.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
if command -v uv >/dev/null 2>&1; then
    UV=(uv)
else
    if ! "$PYTHON" -m uv --version >/dev/null 2>&1; then
        echo "bootstrap: installing uv with pip" >&2
        "$PYTHON" -m pip install --quiet --user uv 2>/dev/null \
            || "$PYTHON" -m pip install --quiet --user --break-system-packages uv 2>/dev/null \
            || "$PYTHON" -m pip install --quiet uv
    fi
    UV=("$PYTHON" -m uv)
fi
# bytecode compiled once at install: this machine sets PYTHONDONTWRITEBYTECODE, and without .pyc
# files every start recompiles torch, open_clip and polars (13 s instead of 5 s for slip-train)
"${UV[@]}" sync --frozen --quiet --compile-bytecode
