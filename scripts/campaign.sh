#!/usr/bin/env bash
# The evidence campaign (issue 10): R-ROME at every layer on disjoint seeded proxy (20) and test (50)
# requests per (model, data set) pair, LGA's gradient products on 30 more pool requests, fluency on
# 10 test requests; then ROME and EMMET on SmolLM2 x CounterFact at every second layer.
# Resumable: rerun it and every finished cell in results/<model>/*.jsonl is kept. Low priority, so
# it can run beside other work. Extra arguments go to every `goldenlayers study` (e.g. --device cuda
# --executor ray --workers 8 --batch-requests 32 on a GPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
export GOLDENLAYERS_PROGRESS=${GOLDENLAYERS_PROGRESS:-0}
SIZES=(--test-size 50 --proxy-size 20 --pool-size 30 --fluency-size 10 --seed 0)
EXECUTOR=(--executor "${EXECUTOR:-ray}" --workers "${WORKERS:-2}")
run() {  # model data editor layers
  echo "== $(date -u +%FT%TZ) $1 x $2 ($3, layers $4)"
  nice -n 19 goldenlayers study --model "$1" --data "$2" --editor "$3" --layers "$4" \
    --out "results/$1" "${SIZES[@]}" "${EXECUTOR[@]}" "${@:5}"
}
# Order: the issue's, except WikiBio last. Its passages are long (about 90 tokens from the subject
# on, 30-token targets): about 110 cells/h on 2 cores here (about 19 h for the pair), where a
# Gemma 3 pair takes a few hours; running it first would hold every
# other pair back by a day. 4 requests per value batch peaked at 10.5 GB per worker at layer 0 and
# two workers ran out of 24 GB, so WikiBio runs one request per batch.
for data in counterfact zsre wikicounterfact wikirecent; do
  run smollm2-135m "$data" r-rome all "$@"
done
for data in counterfact zsre; do
  run gemma3-270m "$data" r-rome all "$@"
done
for editor in rome emmet; do
  run smollm2-135m counterfact "$editor" all:2 "$@"
done
run smollm2-135m wikibio r-rome all --batch-requests 1 "$@"
# The findings from the result files (campaign/README.md):
#   python -m campaign.report results --out docs/findings
