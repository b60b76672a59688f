#!/usr/bin/env bash
# The main job on the embedded demo catalogue: build demo shards over the real HTTP code paths
# (an in-process server on 127.0.0.1) and print their summary. Extra arguments go to the build.
source "$(dirname "$0")/bootstrap.sh"
OUT="${SLIP_DEMO_OUT:-out/demo}"
"${UV[@]}" run slip-data build --source demo --categories all --out "$OUT" "$@"
