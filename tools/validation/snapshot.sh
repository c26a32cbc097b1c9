#!/bin/sh
# Collects the validation study's finished runs into docs/validation/ (one CSV per experiment
# file) and recomputes every number of docs/validation.md from them with `host validate`
# (text, JSON and SVG figures). Safe while the study runs: it only reads finished records.
#   tools/validation/snapshot.sh
set -eu
cd "$(dirname "$0")/../.."
HOST=${HOST:-target/release/host}
OUT=docs/validation
mkdir -p "$OUT"
csvs=""
for exp in shakespeare shakespeare-wa synthetic; do
    dir=examples/validation/$exp.results
    [ -d "$dir/jobs" ] || continue
    "$HOST" sweep collect "examples/validation/$exp.toml" --keep-stale >/dev/null 2>&1 || true
    [ -f "$dir/results.csv" ] || continue
    cp "$dir/results.csv" "$OUT/$exp.csv"
done
# Shakespeare (weights, and weights + activations) is the main data set; synthetic is separate.
main="$OUT/shakespeare.csv"
[ -f "$OUT/shakespeare-wa.csv" ] && main="$main $OUT/shakespeare-wa.csv"
# shellcheck disable=SC2086
"$HOST" validate $main --plot "$OUT/figures" > "$OUT/validate-shakespeare.txt" 2>&1 || true
# shellcheck disable=SC2086
"$HOST" validate $main --json > "$OUT/validate-shakespeare.json" 2>/dev/null || true
# Every run has 20 tokens per parameter, so D is proportional to N: `host validate` drops the data
# term by default (B = 0) and says so in section b.
if [ -f "$OUT/synthetic.csv" ]; then
    "$HOST" validate "$OUT/synthetic.csv" > "$OUT/validate-synthetic.txt" 2>&1 || true
fi
echo "snapshot: $(ls "$OUT"/*.csv | tr '\n' ' ')-> $OUT/validate-*.txt, $OUT/figures/"
