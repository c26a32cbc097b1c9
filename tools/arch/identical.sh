#!/usr/bin/env bash
# Byte-identical outputs of two `host` binaries (issue 12: "no behaviour change").
#
#   tools/arch/identical.sh BEFORE_HOST AFTER_HOST [PLUGINS]
#
# Run from anywhere; it works from the repository root. Both binaries run, one after the other,
# in the same scratch folder (so paths printed in the outputs are the same) on the same plugins
# (PLUGINS, default `plugins/`: the crates of this checkout, whose libraries are found in
# target/release; the plugins are not part of what is compared), each binary copied to the same
# path first. Compared byte for byte, stdout,
# stderr and exit status of each command:
#   host rank plugins/ --json --seed 3
#   host list plugins/ --json
#   the README's `host fit` command (stdout, the law file and the plots it writes)
#   host sweep all examples/experiments/quick.toml into a fresh results folder (stdout, exit
#     status, results.csv, results.jsonl without each record's `timing`, manifest.json, the
#     report with its SVG charts)
#   host sweep plan + status for examples/validation/*.toml and examples/experiments/*.toml
#     (manifest.json: the job hashes, and the status lines)
# Exits 1 and prints a diff summary when anything differs, 0 when all is identical.
set -uo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 2 ] || { echo "usage: $0 BEFORE_HOST AFTER_HOST [PLUGINS]" >&2; exit 2; }
BEFORE=$(realpath "$1")
AFTER=$(realpath "$2")
PLUGINS=${3:-plugins/}
W=$(mktemp -d "${TMPDIR:-/tmp}/identical.XXXXXX")
trap 'rm -rf "$W"' EXIT

# Runs one binary over every command; everything lands in $W/run, then moves to $W/$label.
run_all() {
    local label=$2 out=$W/run host=$W/bin/host
    mkdir -p "$out" "$W/bin"
    # The same executable path for both (the loader looks next to the executable first, and
    # `host list --json` prints where each library came from).
    cp "$1" "$host"
    echo "== $label: $1" >&2
    # (a) rank and list.
    "$host" rank "$PLUGINS" --json --seed 3 >"$out/rank.json" 2>"$out/rank.err"; echo $? >"$out/rank.rc"
    "$host" list "$PLUGINS" --json >"$out/list.json" 2>"$out/list.err"; echo $? >"$out/list.rc"
    # (b) the README's fit command (its law file and plots into the scratch folder).
    "$host" fit examples/data/quest/quest_scaling_runs.csv --map n=non_embedding_params,d=tokens,loss=val_loss \
        --where 'w_quantizer=NoQuantizer|HadamardTrustQuantizer|HalfHadamardTrustQuantizer|HalfHadamardFP4TrustQuantizer' \
        --fix alpha=0.13,beta=0.33,E=1.3,L=1 --plot "$out/fit-plots/" --write-law "$out/quest-law.toml" \
        >"$out/fit.out" 2>"$out/fit.err"; echo $? >"$out/fit.rc"
    # (c) plans (job hashes) and status of every experiment file.
    for exp in examples/validation/*.toml examples/experiments/*.toml; do
        local name
        name=$(basename "$(dirname "$exp")")-$(basename "$exp" .toml)
        "$host" sweep plan "$exp" --results "$out/plan-$name" >"$out/plan-$name.out" 2>"$out/plan-$name.err"
        echo $? >"$out/plan-$name.rc"
        "$host" sweep status "$exp" --results "$out/plan-$name" >"$out/status-$name.out" 2>"$out/status-$name.err"
        echo $? >"$out/status-$name.rc"
    done
    # (d) the quick sweep, from scratch.
    "$host" sweep all examples/experiments/quick.toml --results "$out/quick" >"$out/quick.out" 2>"$out/quick.err"
    echo $? >"$out/quick.rc"
    # Each record's `timing` (wall seconds, pid, lease token, clock) differs from run to run by
    # design; everything else of results.jsonl is compared byte for byte (keys in file order).
    if [ -f "$out/quick/results.jsonl" ]; then
        python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    r.pop("timing", None)
    print(json.dumps(r, separators=(",", ":")))
' "$out/quick/results.jsonl" >"$out/quick-results-without-timing.jsonl"
    fi
    mv "$out" "$W/$label"
}

run_all "$BEFORE" before
run_all "$AFTER" after

# Files compared: everything above except the sweep's per-job scratch (logs with timings, leases,
# checkpoints) and stderr of the sweep (progress with timings).
compare_list() {
    (cd "$W/before" && find . -type f \
        ! -path './quick/jobs/*' ! -path './quick/train/*' ! -path './quick/leases/*' \
        ! -name 'published.log' ! -name 'quick.err' ! -path './quick/results.jsonl' | LC_ALL=C sort)
}
fail=0
n=0
for f in $(compare_list); do
    n=$((n + 1))
    if [ ! -f "$W/after/$f" ]; then
        echo "MISSING after: $f"
        fail=1
    elif ! cmp -s "$W/before/$f" "$W/after/$f"; then
        echo "DIFFERS: $f"
        diff "$W/before/$f" "$W/after/$f" | head -10
        fail=1
    fi
done
extra=$(cd "$W/after" && find . -type f ! -path './quick/jobs/*' ! -path './quick/train/*' ! -path './quick/leases/*' \
    ! -name 'published.log' ! -name 'quick.err' ! -path './quick/results.jsonl' | LC_ALL=C sort | while read -r f; do [ -f "$W/before/$f" ] || echo "$f"; done)
if [ -n "$extra" ]; then
    echo "ONLY after: $extra"
    fail=1
fi
hashes=$(cat "$W"/before/plan-*/manifest.json 2>/dev/null | grep -c '"hash"')
echo "compared $n files ($hashes job hashes in the manifests); exit statuses: rank $(cat "$W/before/rank.rc") list $(cat "$W/before/list.rc") fit $(cat "$W/before/fit.rc") quick $(cat "$W/before/quick.rc")"
if [ $fail = 0 ]; then
    echo "identical"
else
    echo "NOT identical"
fi
exit $fail
