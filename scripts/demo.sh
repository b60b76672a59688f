#!/usr/bin/env bash
# The whole pipeline on the embedded demo catalogue, CPU only: build demo shards over the real HTTP
# code paths (an in-process server on 127.0.0.1), train SLIP and the CLIP baseline with the same
# budget (configs/demo-cpu.toml), evaluate both, print the side-by-side table. Every stage resumes:
# a second run reuses what the first finished. Extra arguments go to the shard build.
source "$(dirname "$0")/bootstrap.sh"
OUT="${SLIP_DEMO_OUT:-out/demo}"
RUN="$(dirname "$OUT")"
STEPS="${SLIP_DEMO_STEPS:-500}"
if [ ! -f "$OUT/shards/manifest.json" ]; then
    "${UV[@]}" run slip-data build --source demo --categories all --out "$OUT" "$@"
fi
for mode in slip clip; do
    out_dir="$RUN/train/demo-$mode"
    resume=()
    [ -d "$out_dir/checkpoints" ] && resume=(--resume latest)
    echo "== train $mode: $STEPS steps of 128 ($out_dir)"
    "${UV[@]}" run slip-train run configs/demo-cpu.toml "${resume[@]}" \
        --set "data.shards=\"$OUT\"" --set "loss.mode=\"$mode\"" --set "train.steps=$STEPS" \
        --set "train.out_dir=\"$out_dir\"" --set "data.cache_dir=\"$RUN/cache\""
    ckpt="$(ls "$out_dir"/checkpoints/step-*.pt | tail -1)"
    structure=()
    [ "$mode" = slip ] && structure=(--structure)
    echo "== evaluate $mode"
    "${UV[@]}" run slip-eval retrieval --ckpt "$ckpt" --shards "$OUT" "${structure[@]}" --quiet \
        --cache-dir "$RUN/eval-cache" --out "$RUN/eval/$mode-retrieval.json" >/dev/null
    "${UV[@]}" run slip-eval classify --ckpt "$ckpt" --shards "$OUT" "${structure[@]}" --quiet \
        --shots 0,1,4,16 --cache-dir "$RUN/eval-cache" --out "$RUN/eval/$mode-classify.json" \
        >/dev/null 2>&1
    # the graph benchmarks' two tasks (docs/eval.md): held-out co-purchases touching the test
    # split (its few edges within it would rank too few), and GNNs over the frozen embeddings
    "${UV[@]}" run slip-eval linkpred --ckpt "$ckpt" --shards "$OUT" "${structure[@]}" --quiet \
        --edges touching --predictors sage --cache-dir "$RUN/eval-cache" \
        --out "$RUN/eval/$mode-linkpred.json" >/dev/null
    "${UV[@]}" run slip-eval nodeclass --ckpt "$ckpt" --shards "$OUT" "${structure[@]}" --quiet \
        --models gcn,sage,mlp --shots 4 --cache-dir "$RUN/eval-cache" \
        --out "$RUN/eval/$mode-nodeclass.json" >/dev/null
done
echo "== SLIP against CLIP on the demo test split"
for task in retrieval classify linkpred nodeclass; do
    graph=()  # after the last table: how far the demo graph's neighbours share the label
    [ "$task" = nodeclass ] && graph=(--shards "$OUT")
    "${UV[@]}" run slip-eval compare "$RUN/eval/slip-$task.json" "$RUN/eval/clip-$task.json" \
        --chart "$RUN/eval/$task.png" "${graph[@]}"
done
# the report also draws the SLIP-vs-CLIP experiment's headline picture (docs/results.md)
"${UV[@]}" run slip-eval report "$RUN"/eval/{slip,clip}-{retrieval,classify,linkpred,nodeclass}.json \
    --shards "$OUT" \
    --cache-dir "$RUN/eval-cache" --experiment bench/results/slip_vs_clip/summary.json \
    --out "$RUN/report"
echo "== open $RUN/report/index.html for the tables, plots, retrieval gallery and a neighbourhood"
