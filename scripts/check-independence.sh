#!/usr/bin/env bash
# Installs each package alone, with plain pip, into a fresh venv and runs it there: no package
# may need another, and slip-data must not pull in torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

"$PYTHON" -m venv "$WORK/data"
"$WORK/data/bin/pip" install --quiet ./packages/slip-data
if "$WORK/data/bin/python" -c "import torch" 2>/dev/null; then
    echo "independence: slip-data pulled in torch" >&2
    exit 1
fi
for other in slip_train slip_eval; do
    if "$WORK/data/bin/python" -c "import $other" 2>/dev/null; then
        echo "independence: slip-data pulled in $other" >&2
        exit 1
    fi
done
"$WORK/data/bin/slip-data" build --source demo --categories All_Beauty,Books --demo-products 300 \
    --out "$WORK/demo" --quiet
"$WORK/data/bin/slip-data" inspect "$WORK/demo" --json >"$WORK/summary.json"
"$WORK/data/bin/python" - "$WORK/summary.json" <<'PY'
import json, sys
summary = json.load(open(sys.argv[1]))
assert summary["nodes"] > 100 and summary["edges"] > 0, summary
print(f"independence: slip-data alone built {summary['nodes']} nodes, {summary['edges']} edges")
PY

# torch's bytecode is not compiled (--no-compile): a quarter of each install's time, for one
# `--help` that imports little of it
for package in slip-train slip-eval; do
    "$PYTHON" -m venv "$WORK/$package"
    "$WORK/$package/bin/pip" install --quiet --no-compile "./packages/$package"
    "$WORK/$package/bin/$package" --help >/dev/null
    echo "independence: $package installs and answers --help alone"
done
