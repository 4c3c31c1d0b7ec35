#!/usr/bin/env bash
# The full method against the plain k-max MIL backbone on generated features whose anomalies the
# backbone finds only partly (bench/RESULTS.md, "Method vs. plain MIL").
#   bash bench/compare_mil.sh [WORKDIR]        (about 20 min on 2 CPU cores)
set -euo pipefail
work="${1:-/tmp/compare_mil}"
py="${PYTHON:-python}"
$py -m pipeline.synth --out "$work/data" --preset small --signal 0.5 --seed 1 --quiet --overwrite
common=(--data-root "$work/data" --epochs 20 --batch-size 16 --T 64 --quiet --overwrite)
for seed in 0 1; do
  for cfg in "backbone:--no-bc --no-bcg --cross-batch none" "full_lambda0.01:" "full_lambda0.1:--lambda1 0.1" \
             "bcg_only:--no-bc" "bc_only_lambda0.1:--no-bcg --cross-batch none --lambda1 0.1"; do
    name="${cfg%%:*}"; flags="${cfg#*:}"
    out="$work/runs/$name-$seed"
    # shellcheck disable=SC2086
    $py -m pipeline.train "${common[@]}" --out "$out" --seed "$seed" $flags
    $py -m pipeline.evaluate --data-root "$work/data" --checkpoint "$out/model.pt" --out "$out/eval" --quiet
    $py -c "import json,sys; r=json.load(open('$out/eval/report.json')); print('$name seed $seed AUC %.4f' % r['auc'])"
  done
done
