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
for exp in shakespeare shakespeare-wa synthetic; do
    dir=examples/validation/$exp.results
    [ -d "$dir/jobs" ] || continue
    # A fresh clone has the committed job records but no manifest (it is not committed).
    [ -f "$dir/manifest.json" ] || "$HOST" sweep plan "examples/validation/$exp.toml" >/dev/null
    "$HOST" sweep collect "examples/validation/$exp.toml" --keep-stale >/dev/null
    cp "$dir/results.csv" "$OUT/$exp.csv"
done
# Shakespeare, weights only (sections a-c, e): the main data set. Every run has 20 tokens per
# parameter, so D is proportional to N: `host validate` drops the data term by default (B = 0) and
# says so in section b.
main="$OUT/shakespeare.csv"
"$HOST" validate "$main" --plot "$OUT/figures" > "$OUT/validate-shakespeare.txt" 2>&1 || true
"$HOST" validate "$main" --json > "$OUT/validate-shakespeare.json" 2>/dev/null || true
# With the weights x activations runs beside them (section d's W x A pairs, their held-out class).
if [ -f "$OUT/shakespeare-wa.csv" ]; then
    "$HOST" validate "$main" "$OUT/shakespeare-wa.csv" > "$OUT/validate-shakespeare-wa.txt" 2>&1 || true
fi
if [ -f "$OUT/synthetic.csv" ]; then
    "$HOST" validate "$OUT/synthetic.csv" > "$OUT/validate-synthetic.txt" 2>&1 || true
fi
echo "snapshot: $(ls "$OUT"/*.csv | tr '\n' ' ')-> $OUT/validate-*.txt, $OUT/figures/"
