#!/bin/sh
# Runs the whole validation study (see README.md beside this file), one experiment file after the
# other; resumable: run it again after an interruption and it continues where it stopped.
# Needs `cargo build --release` and the corpus (`tools/shakespeare/fetch.sh`).
set -eu
cd "$(dirname "$0")/../.."
HOST=${HOST:-target/release/host}
[ -d data/shakespeare ] || { echo "run.sh: data/shakespeare missing: run tools/shakespeare/fetch.sh first" >&2; exit 1; }
rc=0
for exp in shakespeare shakespeare-wa synthetic; do
    # A failed job (exit 2) does not stop the other files; the last non-zero status is returned.
    "$HOST" sweep all "examples/validation/$exp.toml" || rc=$?
done
exit $rc
